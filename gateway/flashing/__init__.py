"""Signed config flashing: keys, the signed `config/set` envelope, the gateway's crash-safe
config store, config diffs and the `roomwarden flash` client.

Kept free of imports so that `gateway.config.site` can use `gateway.flashing.keys`."""
