"""Opening a checkpoint of any kind, and checking that its weights fit a model.

A location is one of: a committed checkpoint directory (full-state or sharded layout, see
:mod:`.envelope`), or a single file (ours, MMEngine's ``.pth``, or a bare state dict). Loading
never runs code: full-state and single files are read with ``weights_only=True``, sharded ones
through DCP with a restricted unpickler for its metadata and weights-only non-tensor entries
(:mod:`.dcp_io`). Every file is checked against the size and CRC-32 its commit record lists.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .. import storage
from . import envelope, full_state, sharded
from .config_diff import model_key_differences
from .envelope import CheckpointError


class CheckpointKeyMismatch(ValueError):
    """A checkpoint's weights are not the model's (wrong file or wrong model config).

    ``partial`` tells whether some keys matched (a non-strict load could use them).
    """

    def __init__(self, message: str, partial: bool = False):
        super().__init__(message)
        self.partial = partial


def _listed(keys: list[str], limit: int = 5) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"{keys[:limit]}{more}"


def check_keys(given: set[str], model: torch.nn.Module, filename: str, strict: bool) -> None:
    """Refuse weights none of whose keys the model has, or (``strict``) any mismatch.

    Raises:
        CheckpointKeyMismatch: naming the file, the model and the keys that differ.
    """
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    what = f"the weights in {storage.describe(filename)} do not fit {type(model).__name__}"
    if expected and not expected & given:
        raise CheckpointKeyMismatch(
            f"{what}: none of its {len(given)} keys ({_listed(sorted(given))}) is a key of the "
            f"model ({_listed(sorted(expected))}); is it a checkpoint of this model?")
    if strict and (missing or unexpected):
        raise CheckpointKeyMismatch(
            f"{what}: missing keys {_listed(missing)}, unexpected keys {_listed(unexpected)}",
            partial=True)


def with_config_differences(exc: Exception, meta: dict, cfg: Any,
                            filename: str) -> Exception:
    """A weights/model mismatch ``exc`` that also names the model keys whose config differs
    between the checkpoint (its recorded config, in ``meta``) and ``cfg``; ``exc`` itself
    when the checkpoint recorded none or none differ."""
    differences = model_key_differences(meta.get("cfg") or "", cfg or {})
    if not differences:
        return exc
    reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if not reason.startswith("the weights in"):
        reason = f"the weights in {storage.describe(filename)} do not fit the model: {reason}"
    error = CheckpointKeyMismatch(
        f"{reason}; the checkpoint's config differs in the model keys: "
        + "; ".join(differences), partial=getattr(exc, "partial", True))
    error.__cause__ = exc
    return error


def stored_model_shapes(opened: OpenedCheckpoint) -> dict[str, tuple | None] | None:
    """The model weights of a committed checkpoint, name -> shape, read without its tensors:
    a sharded one's from DCP's ``.metadata``, a local full-state one's through a memory map
    of ``model.pt`` (``module.`` prefixes removed, as loading does); None for what cannot be
    read so cheaply (a single file, a full-state checkpoint on an object store)."""
    if opened.layout == envelope.SHARDED:
        return sharded.model_shapes(opened.location)
    if opened.layout != envelope.FULL or storage.is_url(opened.location):
        return None
    path = storage.join(opened.location, full_state.MODEL_FILE)
    state = torch.load(path, map_location="meta", mmap=True, weights_only=True)
    weights = state.get("state_dict") if isinstance(state, dict) else None
    if not isinstance(weights, dict):
        return None
    return {(key[len("module."):] if key.startswith("module.") else key):
            (tuple(value.shape) if isinstance(value, torch.Tensor) else None)
            for key, value in weights.items()}


def check_shapes(stored: dict[str, tuple | None], model: torch.nn.Module,
                 filename: str) -> None:
    """Refuse weights whose shapes differ from the model's for the names both have.

    Raises:
        CheckpointKeyMismatch: naming the file, the model and the first weights that differ.
    """
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    differ = [f"{key}: the checkpoint has {list(shape)}, the model {list(expected[key])}"
              for key, shape in sorted(stored.items())
              if shape is not None and key in expected and expected[key] != shape]
    if differ:
        more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
        raise CheckpointKeyMismatch(
            f"the weights in {storage.describe(filename)} do not fit {type(model).__name__}: "
            f"size mismatch for {'; '.join(differ[:3])}{more}", partial=True)


@dataclass
class OpenedCheckpoint:
    """A checkpoint location, checked: its layout (``'full'``, ``'sharded'`` or ``'file'``)
    and, for directories, the verified commit record and meta."""

    location: str
    layout: str
    record: dict | None = None
    meta: dict | None = None

    def read(self, map_location: Any = "cpu", rank: int = 0,
             weights_only: bool = False) -> dict[str, Any]:
        """The checkpoint dict with full tensors (a sharded one is gathered in this process)."""
        if self.layout == "file":
            return full_state.load_single_file(self.location, map_location)
        checkpoint = full_state.read_files(self.location, self.record, self.meta, map_location,
                                           rank, weights_only)
        if self.layout == envelope.SHARDED:
            tensors = sharded.load_full(self.location, self.record)
            checkpoint["state_dict"] = tensors.get("model", {})
            if not weights_only and "optim" in tensors:
                checkpoint["optimizer"] = tensors["optim"]
        return checkpoint


def open_checkpoint(location: str) -> OpenedCheckpoint:
    """Check that ``location`` is a checkpoint and tell its layout.

    Raises:
        CheckpointError: It does not exist, is not committed, is torn, or of an unknown layout.
    """
    location = str(location).rstrip("/")
    if not storage.exists(location):
        raise CheckpointError(f"checkpoint not found: {storage.describe(location)}")
    if not storage.is_dir(location):
        return OpenedCheckpoint(location, "file")
    record = envelope.read_commit(location)
    layout = record.get("layout", envelope.FULL)
    if layout not in (envelope.FULL, envelope.SHARDED):
        raise CheckpointError(f"{storage.describe(location)}: unknown layout {layout!r} in "
                              f"{envelope.COMMIT_FILE} (expected 'full' or 'sharded')")
    return OpenedCheckpoint(location, layout, record, envelope.read_meta(location, record))


def load_checkpoint(location: str, map_location: str | torch.device = "cpu", rank: int = 0,
                    weights_only: bool = False) -> dict[str, Any]:
    """Read a checkpoint of any layout into one process, tensors in full.

    Args:
        location: Checkpoint directory or single file (path or URL).
        map_location: Where tensors are loaded.
        rank: Whose ``rank_<r>.pt`` (RNG state) to read.
        weights_only: Read only the weights and ``meta``.

    Returns:
        ``meta``, ``state_dict`` and, unless ``weights_only``, ``optimizer`` and the other
        state entries. A sharded checkpoint's optimizer state is keyed by parameter name.

    Raises:
        CheckpointError: The location does not exist, is not committed, is torn or corrupt.
    """
    return open_checkpoint(location).read(map_location, rank, weights_only)
