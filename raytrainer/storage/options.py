"""Default fsspec options per protocol: from ``RAYTRAINER_STORAGE_OPTIONS`` and from code.

This module owns the layered options that every filesystem raytrainer opens is built with. From
lowest to highest priority, for a URL of protocol ``p``:

0. raytrainer's defaults for S3 (``s3.S3_DEFAULTS``): requests time out (connect 5 s, read
   10 s) and botocore does not retry, so that a frozen or dead endpoint fails each try in
   bounded time and raytrainer's own retry policy (``retry.py``) decides how long to keep
   trying;
1. fsspec's own configuration (``FSSPEC_S3_ENDPOINT_URL``, ``FSSPEC_S3='{...}'``, fsspec config
   files) and the SDKs' environment (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL`` ...): applied by
   fsspec/botocore underneath whatever raytrainer passes, so they keep working unchanged;
2. ``RAYTRAINER_STORAGE_OPTIONS`` (JSON, read at first use): flat keys, then the ``p`` section;
3. :func:`set_storage_options` with ``protocol=None``, then with ``protocol=p``;
4. options passed to one call.

Flat options apply to every remote protocol, never to local paths or ``memory://``. The
``config_kwargs`` of the layers are merged key by key (a layer that sets only ``read_timeout``
keeps the default ``connect_timeout``); every other option is replaced whole.
"""
from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from typing import Any

import fsspec

ENV_VAR = "RAYTRAINER_STORAGE_OPTIONS"
_ALL = "*"
_NOT_REMOTE = ("file", "local", "memory")

_S3_PROTOCOLS = ("s3", "s3a")
_MERGED_KEYS = ("config_kwargs",)

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
    merged: dict[str, Any] = dict(env.get(_ALL, {}))
    _merge(merged, flat)
    for protocol in sorted((set(env) - {_ALL}) | set(sections)):
        # A protocol section applies after the flat options, so drop the environment's keys
        # that the config sets flat: the config wins over the environment at every level.
        section = {k: v for k, v in env.get(protocol, {}).items() if k not in flat}
        _merge(section, sections.get(protocol, {}))
        merged[protocol] = section
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
    for layer in (_defaults(protocol), _env_layer(), _explicit):
        if protocol not in _NOT_REMOTE:
            _merge(merged, layer.get(_ALL, {}))
        _merge(merged, layer.get(protocol, {}))
    _merge(merged, overrides or {})
    return merged


def _defaults(protocol: str) -> dict[str, dict[str, Any]]:
    """raytrainer's own lowest layer for ``protocol`` (S3 only)."""
    if protocol not in _S3_PROTOCOLS:
        return {}
    from .s3 import S3_DEFAULTS  # aiobotocore's import cost, only once S3 is used

    return {protocol: S3_DEFAULTS}


def _merge(merged: dict[str, Any], layer: Mapping[str, Any]) -> None:
    """Put ``layer`` over ``merged``; :data:`_MERGED_KEYS` are merged key by key."""
    for key, value in layer.items():
        if key in _MERGED_KEYS and isinstance(value, Mapping) and \
                isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **copy.deepcopy(dict(value))}
        else:  # a copy: botocore fills in the retries mapping it is given
            merged[key] = copy.deepcopy(value)


__all__ = ["ENV_VAR", "protocol_of", "reset_storage_options", "resolved_storage_options",
           "set_storage_options",
           "split_storage_options", "storage_options_for"]
