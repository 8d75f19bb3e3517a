"""Default fsspec options per protocol: from ``RAYTRAINER_STORAGE_OPTIONS`` and from code.

This module owns the layered options that every filesystem raytrainer opens is built with. From
lowest to highest priority, for a URL of protocol ``p``:

1. fsspec's own configuration (``FSSPEC_S3_ENDPOINT_URL``, ``FSSPEC_S3='{...}'``, fsspec config
   files) and the SDKs' environment (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL`` ...): applied by
   fsspec/botocore underneath whatever raytrainer passes, so they keep working unchanged;
2. ``RAYTRAINER_STORAGE_OPTIONS`` (JSON, read at first use): flat keys, then the ``p`` section;
3. :func:`set_storage_options` with ``protocol=None``, then with ``protocol=p``;
4. options passed to one call.

Flat options apply to every remote protocol, never to local paths or ``memory://``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import fsspec

ENV_VAR = "RAYTRAINER_STORAGE_OPTIONS"
_ALL = "*"
_NOT_REMOTE = ("file", "local", "memory")

_explicit: dict[str, dict[str, Any]] = {}
_from_env: dict[str, dict[str, Any]] | None = None


def protocol_of(location: str) -> str:
    """The protocol of a location: ``'s3'`` for ``s3://b/k``, ``'file'`` for plain paths."""
    location = str(location)
    if "://" not in location:
        return "file"
    return location.split("://", 1)[0].split("::")[-1].lower()


def split_storage_options(
        options: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Split options into flat ones and per-protocol sections.

    A key is a protocol section when its value is a mapping and the key is a protocol fsspec
    knows (``s3``, ``gs``, ``memory`` ...); other mappings (``config_kwargs``, ``client_kwargs``)
    stay flat options.

    Returns:
        ``(flat, {protocol: options})``.
    """
    known = set(fsspec.available_protocols())
    flat: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for key, value in (options or {}).items():
        if isinstance(value, Mapping) and key in known:
            sections[key] = dict(value)
        else:
            flat[key] = value
    return flat, sections


def set_storage_options(options: Mapping[str, Any] | None, protocol: str | None = None) -> None:
    """Default fsspec options (``endpoint_url``, ``profile`` ...) for URLs of ``protocol``.

    With ``protocol=None`` the options apply to every remote protocol, and protocol sections
    inside them (``{"s3": {"endpoint_url": ...}}``) set that protocol's options. Each call
    replaces the earlier options of the same layer; they override ``RAYTRAINER_STORAGE_OPTIONS``.

    Args:
        options: fsspec keyword arguments; ``None`` or ``{}`` clears the layer.
        protocol: ``'s3'``, ``'gs'`` ... or ``None`` for all remote protocols.
    """
    if protocol is not None:
        _explicit[protocol] = dict(options or {})
        return
    flat, sections = split_storage_options(options)
    _explicit[_ALL] = flat
    for name, values in sections.items():
        _explicit[name] = values


def reset_storage_options() -> None:
    """Forget options set in code and re-read ``RAYTRAINER_STORAGE_OPTIONS`` at next use."""
    global _from_env
    _explicit.clear()
    _from_env = None


def _env_layer() -> dict[str, dict[str, Any]]:
    global _from_env
    if _from_env is None:
        text = os.environ.get(ENV_VAR, "").strip()
        try:
            parsed = json.loads(text) if text else {}
        except ValueError as exc:
            raise ValueError(f"{ENV_VAR} must be a JSON object, e.g. "
                             f"'{{\"s3\": {{\"endpoint_url\": \"http://host:9000\"}}}}': {exc}"
                             ) from exc
        if not isinstance(parsed, dict):
            raise ValueError(f"{ENV_VAR} must be a JSON object, got {type(parsed).__name__}")
        flat, sections = split_storage_options(parsed)
        _from_env = {_ALL: flat, **sections}
    return _from_env


def resolved_storage_options(config_options: Mapping[str, Any] | None = None) -> dict:
    """``RAYTRAINER_STORAGE_OPTIONS`` with ``config_options`` (a config's ``storage`` section)
    on top, as one mapping for :func:`set_storage_options` (flat keys plus protocol sections).

    The Ray driver resolves this once and every worker applies it, so the driver, its checks
    and all ranks talk to the same endpoints whatever the workers' environment holds.
    """
    flat, sections = split_storage_options(config_options)
    env = _env_layer()
    merged: dict[str, Any] = {**env.get(_ALL, {}), **flat}
    for protocol in sorted((set(env) - {_ALL}) | set(sections)):
        # A protocol section applies after the flat options, so drop the environment's keys
        # that the config sets flat: the config wins over the environment at every level.
        from_env = {k: v for k, v in env.get(protocol, {}).items() if k not in flat}
        merged[protocol] = {**from_env, **sections.get(protocol, {})}
    return merged


def storage_options_for(location: str, overrides: Mapping[str, Any] | None = None) -> dict:
    """The merged options raytrainer passes to fsspec for ``location``.

    fsspec's own ``FSSPEC_*`` configuration still applies underneath these.

    Args:
        location: A path or URL.
        overrides: Options for this one call; they win over every default.

    Returns:
        A new dict (may hold secrets: log it through ``redact``).
    """
    protocol = protocol_of(location)
    merged: dict[str, Any] = {}
    for layer in (_env_layer(), _explicit):
        if protocol not in _NOT_REMOTE:
            merged.update(layer.get(_ALL, {}))
        merged.update(layer.get(protocol, {}))
    merged.update(overrides or {})
    return merged


__all__ = ["ENV_VAR", "protocol_of", "reset_storage_options", "resolved_storage_options",
           "set_storage_options",
           "split_storage_options", "storage_options_for"]
