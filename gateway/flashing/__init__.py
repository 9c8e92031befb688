"""Signed config flashing: keys, the signed `config/set` envelope, the gateway's crash-safe
config store, config diffs, the `roomwarden flash` client with its MQTT link (`link`, shared
with the operator commands) and the check a config passes before it is sent (`precheck`).

Kept free of imports so that `gateway.config.site` can use `gateway.flashing.keys`."""
