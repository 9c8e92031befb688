"""MQTT uplink: wire contract, report-by-exception filter, durable outbox, replay pacing."""
