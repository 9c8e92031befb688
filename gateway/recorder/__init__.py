"""Traceability: the flight recorder (recent samples of every point at acquisition resolution)
and incident records (what happened around a serious alarm), see docs/incidents.md."""
