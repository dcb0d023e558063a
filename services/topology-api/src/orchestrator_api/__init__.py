"""Topology service: REST API, storage and the orchestrator CLI (sandbox, local stack)."""
