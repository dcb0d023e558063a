"""What ``orchestrator -c`` takes from a configuration file, and ``-c dump-config``.

``-config FILE`` is loaded as the services load it (:func:`load_settings`: defaults, the file,
``ORCHESTRATOR_*`` variables), so a file the services would refuse is refused here too. The
client takes from it:

- the API's address: ``http://`` (``https://`` with ``UseSSL``) + ``ListenAddress`` (an
  all-interfaces address such as ``:3000`` or ``0.0.0.0:3000`` is reached on loopback) +
  ``URLPrefix``;
- with ``AuthenticationMethod`` ``basic`` or ``multi``, ``HTTPAuthUser``/``HTTPAuthPassword``
  as the credentials (unless the command line or the environment gives some).

``dump-config`` prints the effective settings as JSON under orchestrator's key names, every
secret masked by rule, not by a list (:mod:`orchestrator_shared.redact`): a setting declared
``repr=False`` or whose name says ``Password``, ``Token``, ``Secret``, ``DSN`` or ends in ``Key``
is masked (a DSN keeps everything but its password; a mapping of tokens keeps its values when
they are one of a fixed set of words, such as a token's role), and every other setting is
redacted as any text is (the password of ``nats://user:password@host``, ``password=...``).
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass
from typing import Any

from orchestrator_adapters import tls
from orchestrator_cli import local_stack
from orchestrator_shared.config import LoadedSettings, Settings
from orchestrator_shared.redact import MASK, is_secret_setting, mask_userinfo, redact

# --- the client's view of a configuration -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """What the client uses of a configuration file."""

    source: str
    api: str  # the API's base URL, "/api" not appended
    basic: tuple[str, str] | None  # HTTP basic credentials, when the API wants them


def client_config(loaded: LoadedSettings) -> ClientConfig:
    settings = loaded.settings
    # the URL `orchestrator up` reaches its own API at (URLPrefix is normalized by the settings)
    api = local_stack.api_url(
        settings.ListenAddress, settings.URLPrefix, scheme=tls.api_scheme(settings)
    )
    basic = None
    if settings.AuthenticationMethod in ("basic", "multi"):
        basic = (settings.HTTPAuthUser, settings.HTTPAuthPassword)
    return ClientConfig(source=loaded.source, api=api, basic=basic)


# --- dump-config ------------------------------------------------------------------------------


def secret_settings(model: type[Settings] = Settings) -> frozenset[str]:
    """The settings masked whole (or, a DSN, its password): declared ``repr=False``, or named
    like a secret."""
    return frozenset(
        name
        for name, info in model.model_fields.items()
        if is_secret_setting(name, in_repr=info.repr)
    )


def mask_text(text: str) -> str:
    """``text`` with the passwords it spells out masked (``orchestrator_shared.redact``)."""
    return redact(text)


def mask_dsn(text: str) -> str:
    """A DSN with its password masked: URL (``postgresql://u:p@h/db``), keywords
    (``host=h password=p``) or Go's ``u:p@tcp(h:3306)/db``."""
    masked = redact(text, registered=False)
    return masked if "://" in text else mask_userinfo(masked)


def _masked_everywhere(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, list):
        return [_masked_everywhere(item) for item in value]
    if isinstance(value, dict):
        return {mask_text(str(k)): _masked_everywhere(v) for k, v in value.items()}
    return value


def _fixed_words(annotation: Any) -> frozenset[str]:
    """The values a mapping's values may take when they are a ``Literal`` (roles, not
    secrets); empty otherwise."""
    arguments = typing.get_args(annotation)
    if len(arguments) == 2 and typing.get_origin(arguments[1]) is typing.Literal:
        return frozenset(str(word) for word in typing.get_args(arguments[1]))
    return frozenset()


def _masked_secret(name: str, value: Any, annotation: Any) -> Any:
    if isinstance(value, str):
        if not value:
            return ""  # unset: saying so gives nothing away
        return mask_dsn(value) if "dsn" in name.lower() else MASK
    if isinstance(value, list):
        return [_masked_secret(name, item, annotation) for item in value]
    if isinstance(value, dict):
        words = _fixed_words(annotation)
        return {
            f"{MASK}{index}": (item if str(item) in words else MASK)
            for index, item in enumerate(value.values(), start=1)
        }
    return value


def masked_settings(settings: Settings) -> dict[str, Any]:
    """The settings as JSON values under their (orchestrator's) names, secrets masked."""
    secrets = secret_settings(type(settings))
    fields = type(settings).model_fields
    dumped: dict[str, Any] = settings.model_dump(mode="json")
    return {
        name: (
            _masked_secret(name, value, fields[name].annotation)
            if name in secrets
            else _masked_everywhere(value)
        )
        for name, value in dumped.items()
    }


def dump_config(loaded: LoadedSettings) -> str:
    return json.dumps(masked_settings(loaded.settings), indent=2)
