"""``DIR/sandbox.json``: what ``up`` built, so another process can ``load`` and control it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator_cli.sandbox.config import MANIFEST_NAME, NodeLayout, SandboxOptions, SandboxTLS
from orchestrator_shared.errors import SandboxError

FORMAT = 1


@dataclass(frozen=True, kw_only=True)
class Manifest:
    directory: Path
    options: SandboxOptions
    mariadbd: Path
    version: str
    socket_dir: Path
    layouts: list[NodeLayout]
    pids: list[int | None]


def manifest_path(directory: Path) -> Path:
    return directory / MANIFEST_NAME


def write(manifest: Manifest) -> None:
    """Write atomically (temporary file + rename): a reader never sees half a file."""
    document = {
        "format": FORMAT,
        "directory": str(manifest.directory),
        "options": {
            "nodes": manifest.options.nodes,
            "base_port": manifest.options.base_port,
            "chain": manifest.options.chain,
            "semi_sync": manifest.options.semi_sync,
            "tls": _tls_document(manifest.options.tls),
            "galera": manifest.options.galera,
            "server_defaults": manifest.options.server_defaults,
        },
        "mariadbd": str(manifest.mariadbd),
        "version": manifest.version,
        "socket_dir": str(manifest.socket_dir),
        "nodes": [
            {
                "index": layout.index,
                "key": layout.key,
                "port": layout.port,
                "server_id": layout.server_id,
                "source_index": manifest.options.source_index(layout.index),
                "directory": str(layout.directory),
                "datadir": str(layout.datadir),
                "config_file": str(layout.config_file),
                "error_log": str(layout.error_log),
                "socket": str(layout.socket),
                "pid": pid,
            }
            for layout, pid in zip(manifest.layouts, manifest.pids, strict=True)
        ],
    }
    path = manifest_path(manifest.directory)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(document, indent=2) + "\n")
        temporary.replace(path)
    except OSError as exc:
        raise SandboxError(f"cannot write {path}: {exc}") from exc


def read(directory: Path) -> Manifest:
    path = manifest_path(directory)
    try:
        document: Any = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise SandboxError(f"no sandbox in {directory} ({path} not found)") from exc
    except (OSError, ValueError) as exc:
        raise SandboxError(f"cannot read {path}: {exc}") from exc
    try:
        if document["format"] != FORMAT:
            raise SandboxError(f"{path}: unsupported format {document['format']!r}")
        options = _options(document["options"])
        nodes = document["nodes"]
        layouts = [
            NodeLayout(
                index=int(node["index"]),
                port=int(node["port"]),
                server_id=int(node["server_id"]),
                directory=Path(node["directory"]),
                socket=Path(node["socket"]),
            )
            for node in nodes
        ]
        pids = [None if node["pid"] is None else int(node["pid"]) for node in nodes]
        return Manifest(
            directory=Path(document["directory"]),
            options=options,
            mariadbd=Path(document["mariadbd"]),
            version=str(document["version"]),
            socket_dir=Path(document["socket_dir"]),
            layouts=layouts,
            pids=pids,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SandboxError(f"{path} is not a sandbox manifest: {exc!r}") from exc


def _tls_document(tls: SandboxTLS | None) -> dict[str, str] | None:
    if tls is None:
        return None
    return {"ca": str(tls.ca), "cert": str(tls.cert), "key": str(tls.key)}


def _options(document: dict[str, Any]) -> SandboxOptions:
    """The options as written; a manifest from before TLS or Galera (no ``tls``, no
    ``galera``) is a sandbox without."""
    fields = dict(document)
    tls = fields.pop("tls", None)
    return SandboxOptions(
        **fields,
        tls=None
        if tls is None
        else SandboxTLS(ca=Path(tls["ca"]), cert=Path(tls["cert"]), key=Path(tls["key"])),
    )
