"""The wire contract's leaf package: the vocabulary the gateway (edge) and the central ingest
share — the enums of quality, severity, alarm state and event kind, and the sample tuple.

It imports nothing from the rest of `gateway`; edge modules (field, alarms) re-export these
names where they were defined before, and `gateway.contract.wire` builds its messages on them
(tests/test_layering.py checks that the ingest reaches no edge module through it)."""
