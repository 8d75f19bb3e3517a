"""BaseModule: an nn.Module whose weights can be initialised from an ``init_cfg``."""
from __future__ import annotations

import torch.nn as nn

from ..registry import WEIGHT_INITIALIZERS


class BaseModule(nn.Module):
    """``nn.Module`` with ``init_weights()`` driven by ``init_cfg``.

    Args:
        init_cfg: One or a list of initialiser configs, e.g.
            ``dict(type='Normal', layer='Linear', std=0.01)``; see ``weight_init``.
    """

    def __init__(self, init_cfg: dict | list[dict] | None = None):
        super().__init__()
        self.init_cfg = init_cfg
        self._is_init = False

    @property
    def is_init(self) -> bool:
        return self._is_init

    def init_weights(self) -> None:
        """Run this module's ``init_cfg``, then let children initialise themselves."""
        if self._is_init:
            return
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else \
            [self.init_cfg] if self.init_cfg else []
        for cfg in cfgs:
            WEIGHT_INITIALIZERS.build(dict(cfg))(self)
        for child in self.children():
            if hasattr(child, "init_weights"):
                child.init_weights()
        self._is_init = True


class Sequential(BaseModule, nn.Sequential):
    def __init__(self, *args, init_cfg: dict | None = None):
        BaseModule.__init__(self, init_cfg)
        nn.Sequential.__init__(self, *args)


class ModuleList(BaseModule, nn.ModuleList):
    def __init__(self, modules=None, init_cfg: dict | None = None):
        BaseModule.__init__(self, init_cfg)
        nn.ModuleList.__init__(self, modules)


class ModuleDict(BaseModule, nn.ModuleDict):
    def __init__(self, modules=None, init_cfg: dict | None = None):
        BaseModule.__init__(self, init_cfg)
        nn.ModuleDict.__init__(self, modules)
