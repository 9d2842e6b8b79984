"""The x4 upscaler's own text encoder: the OpenCLIP text tower (ViT-H/14 in the official file), as SD 2 and
ldm's `FrozenOpenCLIPEmbedder(layer="penultimate")` use it.

State-dict layout (the checkpoint's `cond_stage_model.model.*`, prefix removed): `token_embedding.weight` [V, D],
`positional_embedding` [L, D], `transformer.resblocks.{i}.{ln_1, attn.in_proj_weight/bias, attn.out_proj, ln_2,
mlp.c_fc, mlp.c_proj}`, `ln_final`, `text_projection` (unused: SD 2 reads the penultimate block, not the pooled
projection). Heads = D / 64 (OpenCLIP's head width). Forward (token ids [N, L] -> [N, L, D]):
token embedding + positions, every residual block but the last under a causal mask, then `ln_final`.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import torch
from torch import nn

HEAD_WIDTH = 64


@dataclasses.dataclass(frozen=True)
class TextConfig:
    vocab: int
    width: int
    context_length: int
    layers: int
    mlp_width: int

    @property
    def heads(self) -> int:
        return max(1, self.width // HEAD_WIDTH)

    @classmethod
    def from_state_dict(cls, sd: Mapping) -> "TextConfig":
        """Sizes read from the shapes; KeyError names a missing tensor."""
        vocab, width = sd["token_embedding.weight"].shape
        layers = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("transformer.resblocks."))
        return cls(vocab=int(vocab), width=int(width), context_length=int(sd["positional_embedding"].shape[0]),
                   layers=layers, mlp_width=int(sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]))


class _Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_width: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, mlp_width))
        self.mlp.add_module("gelu", nn.GELU())
        self.mlp.add_module("c_proj", nn.Linear(mlp_width, width))

    def forward(self, x, mask):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class OpenCLIPText(nn.Module):
    """OpenCLIP text tower, penultimate-layer output (SD 2 / x4 upscaler conditioning)."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab, config.width)
        self.positional_embedding = nn.Parameter(torch.zeros(config.context_length, config.width))
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList(
            _Block(config.width, config.heads, config.mlp_width) for _ in range(config.layers))
        self.ln_final = nn.LayerNorm(config.width)
        self.text_projection = nn.Parameter(torch.zeros(config.width, config.width))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        dtype = self.positional_embedding.dtype
        x = (self.token_embedding(tokens) + self.positional_embedding).to(dtype).permute(1, 0, 2)  # [L, N, D]
        length = x.shape[0]
        mask = torch.full((length, length), float("-inf"), device=x.device, dtype=dtype).triu_(1)
        for block in self.transformer.resblocks[:-1]:  # "penultimate": the last block is skipped
            x = block(x, mask)
        return self.ln_final(x.permute(1, 0, 2))
