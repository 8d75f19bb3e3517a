"""A small decoder-only transformer over bytes (the character-level language-model example).

Every layer is a plain ``nn.Module`` built from stock torch ops, and each transformer layer is
one :class:`Block`, so FSDP2's ``fully_shard`` can shard the model block by block.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import MODELS
from .base_model import BaseModel


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position ``t`` only sees positions ``<= t``."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"CharTransformer: embed_dim ({embed_dim}) must be divisible by "
                             f"num_heads ({num_heads})")
        self.num_heads = num_heads
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(batch, length, width)))


class Block(nn.Module):
    """One pre-LayerNorm transformer layer: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, embed_dim: int, num_heads: int, mlp_ratio: int = 4, dropout: float = 0.0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(embed_dim)
        self.attn = CausalSelfAttention(embed_dim, num_heads, dropout)
        self.ln_2 = nn.LayerNorm(embed_dim)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, mlp_ratio * embed_dim),
            nn.GELU(),
            nn.Linear(mlp_ratio * embed_dim, embed_dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


@MODELS.register_module()
class CharTransformer(BaseModel):
    """Decoder-only transformer predicting the next token at every position.

    ``forward(inputs, data_samples, mode)`` takes token ids ``(B, T)`` and, for ``'loss'`` and
    ``'predict'``, the target ids ``(B, T)`` (the inputs shifted by one). ``'loss'`` returns
    ``dict(loss=cross entropy averaged over all positions)``; ``'predict'`` returns
    ``(nll, num_tokens)``, each of shape ``(B,)``: the summed negative log-likelihood and the
    number of predicted tokens of each sequence, which the ``Perplexity`` metric consumes;
    ``'tensor'`` returns the logits ``(B, T, vocab_size)``.

    Weights start from GPT-2's initialisation (normal, std 0.02; the residual projections
    scaled by ``1/sqrt(2 * num_layers)``), drawn from torch's global generator, which the
    runner seeds.

    Args:
        vocab_size: Number of token ids (256 for bytes).
        block_size: Longest sequence the position embedding covers.
        embed_dim: Width of the residual stream.
        num_layers: Number of :class:`Block` layers.
        num_heads: Attention heads per layer (must divide ``embed_dim``).
        mlp_ratio: Hidden width of each MLP as a multiple of ``embed_dim``.
        dropout: Dropout after the embeddings, in attention and after each residual branch.
        data_preprocessor: See ``BaseModel``.
        init_cfg: See ``BaseModule``; applied on top of the default initialisation.
    """

    def __init__(self, vocab_size: int = 256, block_size: int = 64, embed_dim: int = 128,
                 num_layers: int = 4, num_heads: int = 4, mlp_ratio: int = 4,
                 dropout: float = 0.0, data_preprocessor=None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.vocab_size = vocab_size
        self.block_size = block_size
        self.token_embedding = nn.Embedding(vocab_size, embed_dim)
        self.position_embedding = nn.Embedding(block_size, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, dropout)
                                    for _ in range(num_layers))
        self.ln_f = nn.LayerNorm(embed_dim)
        self.lm_head = nn.Linear(embed_dim, vocab_size, bias=False)
        self._init_parameters(num_layers)

    def _init_parameters(self, num_layers: int) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        # Each block adds two residual branches; scaling their output projections keeps the
        # residual stream's variance independent of depth.
        for block in self.blocks:
            for projection in (block.attn.proj, block.mlp[2]):
                nn.init.normal_(projection.weight, mean=0.0, std=0.02 / (2 * num_layers) ** 0.5)

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``(B, T, vocab_size)`` for token ids ``(B, T)``."""
        length = inputs.shape[1]
        if length > self.block_size:
            raise ValueError(f"CharTransformer: sequences of {length} tokens exceed "
                             f"block_size={self.block_size}")
        positions = torch.arange(length, device=inputs.device)
        x = self.dropout(self.token_embedding(inputs) + self.position_embedding(positions))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))

    def forward(self, inputs: torch.Tensor, data_samples: torch.Tensor | None = None,
                mode: str = "tensor"):
        if mode not in ("loss", "predict", "tensor"):
            raise ValueError(f"CharTransformer: mode must be 'loss', 'predict' or 'tensor', got "
                             f"{mode!r}")
        logits = self.logits(inputs)
        if mode == "tensor":
            return logits
        if data_samples is None:
            raise ValueError(f"CharTransformer: mode={mode!r} needs the target ids "
                             "(data_samples)")
        targets = data_samples.long()
        flat_logits = logits.float().flatten(0, 1)
        if mode == "loss":
            return {"loss": F.cross_entropy(flat_logits, targets.flatten())}
        nll = F.cross_entropy(flat_logits, targets.flatten(), reduction="none")
        nll = nll.view_as(targets).sum(dim=1)
        num_tokens = torch.full_like(nll, targets.shape[1])
        return nll, num_tokens
