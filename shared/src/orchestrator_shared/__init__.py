"""Orchestrator shared library: the pure domain model, configuration and bus contracts."""
