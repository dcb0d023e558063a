"""Orchestrator's contracts: the pure domain model, the bus subjects, messages and streams, the
etcd key layout, configuration and the error tree (docs/architecture.md)."""
