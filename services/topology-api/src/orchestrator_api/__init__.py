"""Topology service: the store fed from the bus, the REST API and the web UI (docs/api.md)."""
