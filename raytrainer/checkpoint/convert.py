"""``raytrainer convert``: a checkpoint (sharded or full) as one file of model weights.

The file is a plain ``{'state_dict': {name: tensor}, 'meta': {...}}`` written with
``torch.save``; ``torch.load(path, weights_only=True)`` reads it, and so do MMEngine's
``load_checkpoint`` and raytrainer's ``load_from``. A sharded checkpoint is gathered in this
process through DCP (no process group, any world size wrote it).
"""
from __future__ import annotations

import argparse
import io
from typing import Any

import torch

from .. import storage
from .reading import open_checkpoint

_META_KEYS = ("epoch", "iter", "seed", "experiment_name", "timestamp", "lineage", "world_size",
              "strategy", "dataset_meta", "raytrainer_version", "cfg")


def convert(location: str, output: str, include_optimizer: bool = False) -> dict[str, Any]:
    """Write the weights of the checkpoint at ``location`` as one ``torch.save`` file.

    Args:
        location: A committed checkpoint directory (full or sharded) or a ``.pth`` file.
        output: The file to write (path or URL).
        include_optimizer: Also store the optimizer state (keyed by parameter name for a
            sharded checkpoint, as ``optimizer.state_dict()`` lists it for a full one).

    Returns:
        What was written.

    Raises:
        CheckpointError: ``location`` is missing, uncommitted, torn or corrupt.
    """
    opened = open_checkpoint(location)
    checkpoint = opened.read(weights_only=not include_optimizer)
    meta = checkpoint.get("meta") or {}
    result: dict[str, Any] = {
        "state_dict": {name: tensor.detach().cpu().contiguous()
                       for name, tensor in checkpoint["state_dict"].items()},
        "meta": {key: meta[key] for key in _META_KEYS if key in meta},
    }
    result["meta"]["converted_from"] = storage.describe(opened.location)
    result["meta"]["layout"] = opened.layout
    if include_optimizer and "optimizer" in checkpoint:
        result["optimizer"] = checkpoint["optimizer"]
    buffer = io.BytesIO()
    torch.save(result, buffer)
    storage.write_bytes(output, buffer.getvalue())
    return result


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``raytrainer convert`` on the CLI's sub-command parsers."""
    parser = subparsers.add_parser(
        "convert", help="write a checkpoint's weights as one .pth file",
        description="Gather a checkpoint (sharded FSDP/DCP or full-state, any world size) into "
                    "one file of model weights that torch.load(weights_only=True), MMEngine and "
                    "load_from read, e.g. for export.",
        epilog="example: raytrainer convert work_dirs/charlm/checkpoints/epoch_5 "
               "charlm_epoch5.pth")
    parser.add_argument("checkpoint", metavar="CHECKPOINT",
                        help="checkpoint directory or .pth file (path or URL)")
    parser.add_argument("output", metavar="OUTPUT", help="the .pth file to write (path or URL)")
    parser.add_argument("--optimizer", action="store_true",
                        help="also store the optimizer state")
    parser.add_argument("--debug", action="store_true",
                        help="print the full traceback when the command fails")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    result = convert(args.checkpoint, args.output, include_optimizer=args.optimizer)
    count = sum(tensor.numel() for tensor in result["state_dict"].values())
    print(f"wrote {storage.describe(args.output)}: {len(result['state_dict'])} tensors, "
          f"{count:,} values (from a {result['meta']['layout']} checkpoint)", flush=True)
    return 0
