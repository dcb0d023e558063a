"""Reading the configuration's sources into raw values for :class:`~orchestrator_shared.config.
Settings` to validate (the order of the sources and their rules: :mod:`orchestrator_shared.config`):
the JSON file, ``ORCHESTRATOR_<Name>`` variables and their ``_FILE`` secret files, orchestrator's
``[client]`` credentials files and ``${NAME}`` passwords, and keys orchestrator spells differently
(legacy names, keys in another unit: :class:`Conversion`).

The settings are known here only through :class:`Keys` (their fields and orchestrator's other
names for them), so that the model and the reading of its sources change apart.
"""

from __future__ import annotations

import configparser
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from orchestrator_shared.errors import ConfigError

ENV_PREFIX = "ORCHESTRATOR_"


@dataclass(frozen=True, slots=True)
class Conversion:
    """An orchestrator key read into one of our settings in another unit: ours = its value times
    ``factor``. Within one source (the file, the environment, the secret files) our key, when
    given too, wins: it is the more specific of the two.

    ``zero_keeps_default``: orchestrator documents 0 but never acts on it; 0 then leaves our
    setting alone, with a warning saying so.
    """

    target: str
    factor: int
    unit: str
    zero_keeps_default: bool = False

    def convert(self, key: str, value: Any) -> int:
        number = int(value.strip()) if isinstance(value, str) and value.strip().isdigit() else value
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise ConfigError(key, f"expected a whole number of {self.unit}, got {value!r}")
        return number * self.factor


def _normalized(name: str) -> str:
    return name.replace("_", "").lower()


class Keys:
    """The names a source may give: the settings' ``fields``, orchestrator's legacy spellings
    (``synonyms``: legacy name -> setting) and its keys in another unit (``conversions``)."""

    def __init__(
        self,
        fields: Mapping[str, FieldInfo],
        synonyms: Mapping[str, str],
        conversions: Mapping[str, Conversion],
    ) -> None:
        self.fields = fields
        self.synonyms = synonyms
        self.conversions = conversions
        self._fields_by_normalized = {_normalized(name): name for name in fields}
        self._synonyms_by_normalized = {_normalized(old): new for old, new in synonyms.items()}
        self._conversions_by_normalized = {_normalized(key): key for key in conversions}

    def key_for(self, name: str, *, exact: bool) -> str | None:
        """The setting ``name`` names (a synonym resolved), or the orchestrator key of a
        :class:`Conversion`; ``exact``: spelled exactly (the file) rather than matched
        ignoring case and underscores (the environment)."""
        if exact:
            if name in self.fields or name in self.conversions:
                return name
            return self.synonyms.get(name)
        normalized = _normalized(name)
        return (
            self._fields_by_normalized.get(normalized)
            or self._synonyms_by_normalized.get(normalized)
            or self._conversions_by_normalized.get(normalized)
        )

    def env_value(self, name: str, raw: str) -> Any:
        """Interpret an environment string for field ``name`` (a conversion's key: as is)."""
        if name in self.conversions:
            return raw
        annotation = self.fields[name].annotation
        if getattr(annotation, "__origin__", None) is dict:
            try:
                return json.loads(raw)
            except json.JSONDecodeError:
                raise ConfigError(name, f"expected a JSON object, got {raw!r}") from None
        if getattr(annotation, "__origin__", None) is tuple:
            text = raw.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except json.JSONDecodeError:
                    raise ConfigError(name, f"expected a JSON list, got {raw!r}") from None
            return [item.strip() for item in text.split(",") if item.strip()]
        return raw


@dataclass
class _Source:
    """The values one source gives (the file, the environment or the secret files), the keys
    read through a :class:`Conversion` kept apart until :meth:`apply`."""

    where: str
    keys: Keys
    values: dict[str, Any] = field(default_factory=dict)
    converted: dict[str, tuple[str, Any]] = field(default_factory=dict)  # target -> (key, raw)

    def put(self, key: str, value: Any) -> None:
        conversion = self.keys.conversions.get(key)
        if conversion is None:
            self.values[key] = value
        else:
            self.converted[conversion.target] = (key, value)

    def apply(self, raw: dict[str, Any], warnings: list[str]) -> None:
        for target, (key, value) in self.converted.items():
            conversion = self.keys.conversions[key]
            converted = conversion.convert(key, value)
            if target in self.values:
                warnings.append(f"{key} in {self.where} is ignored: {target} is set there too")
            elif converted == 0 and conversion.zero_keeps_default:
                warnings.append(
                    f"{key}: 0 in {self.where} is ignored, as orchestrator ignores it; "
                    f"{target} keeps its value (set {target} to 0 to turn it off)"
                )
            else:
                raw[target] = converted
        raw.update(self.values)


def read_sources(
    path: str | Path | None, env: Mapping[str, str], default_path: Path, keys: Keys
) -> tuple[dict[str, Any], str, list[str]]:
    """The raw values of every source, later sources winning (JSON lists as tuples); where
    the file was (``"defaults"`` without one); the warnings so far."""
    warnings: list[str] = []
    raw: dict[str, Any] = {}
    source = "defaults"

    config_path = Path(path) if path is not None else None
    if config_path is None and default_path.exists():
        config_path = default_path
    if config_path is not None:
        try:
            text = config_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError("config", f"cannot read {config_path}: {exc.strerror}") from None
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                "config", f"{config_path} is not valid JSON: {exc.msg} at line {exc.lineno}"
            ) from None
        if not isinstance(document, dict):
            raise ConfigError("config", f"{config_path} must hold a JSON object")
        source = str(config_path)
        from_config = _Source(str(config_path), keys)
        for key, value in document.items():
            found = keys.key_for(key, exact=True)
            if found is None:
                warnings.append(f"unknown setting {key!r} in {config_path} is ignored")
                continue
            from_config.put(found, value)
        from_config.apply(raw, warnings)

    for from_env in _environment_sources(env, keys):
        from_env.apply(raw, warnings)

    _mysql_credentials(raw, env)

    for name, value in list(raw.items()):
        if isinstance(value, list):
            raw[name] = tuple(value)
    return raw, source, warnings


def _environment_sources(env: Mapping[str, str], keys: Keys) -> tuple[_Source, _Source]:
    """``ORCHESTRATOR_<Name>`` values, then the ``ORCHESTRATOR_<Name>_FILE`` secret files (a
    later source). A name ending in ``_FILE`` that names a setting only with the suffix
    (``ORCHESTRATOR_SSL_CERT_FILE``) is that setting's plain value."""
    plain, secrets = _Source("the environment", keys), _Source("the secret files", keys)
    for env_name, env_text in env.items():
        if not env_name.startswith(ENV_PREFIX):
            continue
        name = env_name.removeprefix(ENV_PREFIX)
        key = None
        if name.upper().endswith("_FILE"):
            key = keys.key_for(name[: -len("_FILE")], exact=False)
        if key is not None:
            try:
                text = Path(env_text).read_text(encoding="utf-8").rstrip("\n")
            except OSError as exc:
                raise ConfigError(
                    key, f"cannot read secret file {env_text}: {exc.strerror}"
                ) from None
            secrets.put(key, keys.env_value(key, text))
            continue
        key = keys.key_for(name, exact=False)
        if key is not None:
            plain.put(key, keys.env_value(key, env_text))
    return plain, secrets


def _read_credentials_file(path: str, prefix: str = "MySQLTopology") -> dict[str, str]:
    """``<prefix>User`` / ``<prefix>Password`` from the ``[client]`` section of ``path`` (the
    file named by ``<prefix>CredentialsConfigFile``)."""
    setting = f"{prefix}CredentialsConfigFile"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise ConfigError(setting, f"cannot read {path}: {exc.strerror}") from None
    except configparser.Error as exc:
        first_line = str(exc).splitlines()[0]
        raise ConfigError(setting, f"{path} is not an INI file: {first_line}") from None
    if not parser.has_section("client"):
        raise ConfigError(setting, f"{path} has no [client] section")
    client = parser["client"]
    found: dict[str, str] = {}
    if "user" in client:
        found[f"{prefix}User"] = client["user"].strip()
    if "password" in client:
        found[f"{prefix}Password"] = client["password"].strip()
    return found


_ENV_REFERENCE = re.compile(r"\$\{([^}]+)\}")


def _mysql_credentials(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    """orchestrator's ways to give MySQL credentials, for the topology and for the MySQL store:
    a credentials file (``<prefix>CredentialsConfigFile``, winning over the plain keys), and a
    password ``${NAME}`` read from the environment variable NAME."""
    for prefix in ("MySQLTopology", "MySQLOrchestrator"):
        credentials_file = raw.get(f"{prefix}CredentialsConfigFile")
        if isinstance(credentials_file, str) and credentials_file:
            raw.update(_read_credentials_file(credentials_file, prefix))
        setting = f"{prefix}Password"
        password = raw.get(setting)
        reference = _ENV_REFERENCE.fullmatch(password) if isinstance(password, str) else None
        if reference is not None:
            name = reference.group(1)
            if name not in env:
                raise ConfigError(setting, f"names the environment variable {name}, not set")
            raw[setting] = env[name]
