"""The local alarm panel: HTTP server, JSON API and page, served by the daemon."""
