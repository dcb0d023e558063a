"""The MariaDB binaries and a cached, initialized datadir every node is copied from.

``mariadb-install-db`` takes most of a second and a CPU; running it once per machine and
MariaDB version and copying the result (~25 MB) per node is what keeps ``up`` fast. The
template lives in ``$XDG_CACHE_HOME/orchestrator`` (default ``~/.cache/orchestrator``) under a
name holding the ``mariadbd`` version, so a MariaDB upgrade builds a new one (and removes the
old). Concurrent builders (parallel test runs) serialize on a lock file.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from orchestrator_cli.sandbox.config import INNODB_LOG_FILE_SIZE
from orchestrator_shared.errors import SandboxError

# Bump when the way the template is built changes, so caches are rebuilt.
TEMPLATE_FORMAT = 1
_SEARCH_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")
# install-db also creates root@<hostname>, which --skip-name-resolve then warns about.
_BOOTSTRAP_SQL = (
    "DELETE FROM mysql.global_priv WHERE Host NOT IN ('localhost', '127.0.0.1', '::1');\n"
    "DELETE FROM mysql.proxies_priv WHERE Host NOT IN ('localhost', '127.0.0.1', '::1');\n"
)
_TAIL_LINES = 8


@dataclass(frozen=True)
class MariaDBBinaries:
    mariadbd: Path
    install_db: Path
    version: str


def _which(name: str) -> Path:
    found = shutil.which(name)
    if found is not None:
        return Path(found)
    for directory in _SEARCH_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise SandboxError(f"{name} not found on PATH or in {', '.join(_SEARCH_DIRS)}")


def find_binaries() -> MariaDBBinaries:
    """Locate ``mariadbd`` and ``mariadb-install-db`` and read the server version."""
    mariadbd = _which("mariadbd")
    install_db = _which("mariadb-install-db")
    try:
        out = subprocess.run(
            [str(mariadbd), "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxError(f"{mariadbd} --version failed: {exc}") from exc
    match = re.search(r"Ver\s+(\S+)", out)
    if match is None:
        raise SandboxError(f"cannot read the version of {mariadbd} from {out.strip()!r}")
    return MariaDBBinaries(mariadbd=mariadbd, install_db=install_db, version=match.group(1))


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "orchestrator"


def tail(text: str, lines: int = _TAIL_LINES) -> str:
    """The last non-empty lines of ``text`` joined on one line (for one-line errors)."""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def _template_name(version: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9.+-]", "_", version)
    return f"mariadb-template-{safe}-f{TEMPLATE_FORMAT}"


def _user_args() -> list[str]:
    return ["--user=root"] if os.geteuid() == 0 else []


def _run(args: list[str], *, what: str, stdin: str | None = None) -> None:
    try:
        result = subprocess.run(
            args, input=stdin, capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxError(f"{what} failed: {exc}") from exc
    if result.returncode != 0:
        raise SandboxError(
            f"{what} failed (exit {result.returncode}): {tail(result.stdout + result.stderr)}"
        )


def _build(binaries: MariaDBBinaries, target: Path) -> None:
    _run(
        [
            str(binaries.install_db),
            "--no-defaults",
            f"--datadir={target}",
            *_user_args(),
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            f"--innodb-log-file-size={INNODB_LOG_FILE_SIZE}",
        ],
        what=f"{binaries.install_db} (template datadir)",
    )
    _run(
        [
            str(binaries.mariadbd),
            "--no-defaults",
            "--bootstrap",
            f"--datadir={target}",
            *_user_args(),
            "--skip-log-bin",
            f"--innodb-log-file-size={INNODB_LOG_FILE_SIZE}",
            f"--log-error={target.parent / (target.name + '.bootstrap.log')}",
        ],
        what=f"{binaries.mariadbd} --bootstrap (template users)",
        stdin=_BOOTSTRAP_SQL,
    )
    (target.parent / (target.name + ".bootstrap.log")).unlink(missing_ok=True)


def ensure_template(binaries: MariaDBBinaries, root: Path | None = None) -> Path:
    """The template datadir for ``binaries``, built on first use."""
    root = root or cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SandboxError(f"cannot create the template cache {root}: {exc}") from exc
    final = root / _template_name(binaries.version)
    if final.is_dir():
        return final
    with (root / "mariadb-template.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.is_dir():
            return final
        building = root / f".building-{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        try:
            _build(binaries, building)
            building.rename(final)
        finally:
            shutil.rmtree(building, ignore_errors=True)
        for stale in root.glob("mariadb-template-*"):
            if stale != final and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
    return final


def copy_template(template: Path, datadir: Path) -> None:
    try:
        shutil.copytree(template, datadir)
    except OSError as exc:
        raise SandboxError(f"cannot copy the template datadir to {datadir}: {exc}") from exc
