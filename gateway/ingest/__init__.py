"""The central ingest service: MQTT (contract v1) in, InfluxDB (v2 write API) out.

`settings` loads the central YAML, `schema` turns contract messages into points, `catalogs`
remembers every point catalog seen, `deadletter` keeps what could not be written, `service`
runs the MQTT client and the database writer, `cli` is `roomwarden ingest`."""
