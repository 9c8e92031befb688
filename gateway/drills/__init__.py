"""Scripted drills: scenarios on a simulated site with expected and forbidden alarms."""
