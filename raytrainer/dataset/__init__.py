"""Data: resumable distributed samplers, collate functions, DataLoader building, datasets."""
from .builder import build_dataloader, worker_init_fn
from .charlm import CharTextDataset
from .collate import default_collate, pseudo_collate
from .digits import DigitsDataset
from .npz import NpzDataset
from .sampler import DefaultSampler, InfiniteSampler

__all__ = ["DefaultSampler", "InfiniteSampler", "build_dataloader", "worker_init_fn",
           "default_collate", "pseudo_collate", "DigitsDataset", "NpzDataset",
           "CharTextDataset"]
