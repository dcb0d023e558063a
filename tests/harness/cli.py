"""The ``orchestrator`` command run as a separate process, as a user runs it (what it starts,
e.g. sandbox nodes, outlives it as it would outlive a shell command)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_orchestrator(*args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    """``orchestrator ARGS...`` from the repository root; its exit code and output, text."""
    return subprocess.run(
        ["uv", "run", "--no-sync", "orchestrator", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
