"""The orchestrator-compatible REST API (FastAPI): app factory, errors, auth, routes."""
