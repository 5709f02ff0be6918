"""HTTP APIs of other services, served by this server."""
