"""diffusers <-> ldm key names of a Stable Diffusion UNet (SD 1.x/2.x layout; SDXL add-embedding too).

Pure Python. The mapping is built from the block structure (:class:`UNetLayout`), which is read from
the key names themselves, so the same code serves SD 1.5 (4 levels, 2 res blocks, attention at
levels 0-2) and any other layout of the same family of ``UNet2DConditionModel`` / ldm ``UNetModel``.

Block correspondence (L = res blocks per level, b = level, j = layer):

=============================================  ==============================================
diffusers                                      ldm
=============================================  ==============================================
conv_in                                        input_blocks.0.0
time_embedding.linear_1 / linear_2             time_embed.0 / time_embed.2
down_blocks.b.resnets.j / attentions.j         input_blocks.{b(L+1)+j+1}.0 / .1
down_blocks.b.downsamplers.0.conv              input_blocks.{(b+1)(L+1)}.0.op
mid_block.resnets.0 / attentions.0 / resnets.1 middle_block.0 / .1 / .2
up_blocks.b.resnets.j / attentions.j (j<=L)    output_blocks.{b(L+1)+j}.0 / .1
up_blocks.b.upsamplers.0.conv                  output_blocks.{b(L+1)+L}.{2 if attention else 1}.conv
conv_norm_out / conv_out                       out.0 / out.2
add_embedding.linear_1 / linear_2 (SDXL)       label_emb.0.0 / label_emb.0.2
=============================================  ==============================================

Inside a res block: norm1->in_layers.0, conv1->in_layers.2, time_emb_proj->emb_layers.1,
norm2->out_layers.0, conv2->out_layers.3, conv_shortcut->skip_connection. Attention blocks use the
same names on both sides.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Dict, Iterable, List, Tuple

from ._concat import concat_module

_keys = concat_module("keys")
LDM_PREFIXES = _keys.LDM_PREFIXES
strip_ldm_prefix = _keys.strip_ldm_prefix

DIFFUSERS_MARKERS = ("conv_in.", "down_blocks.", "mid_block.", "up_blocks.", "time_embedding.",
                     "conv_out.", "conv_norm_out.")
LDM_MARKERS = ("input_blocks.", "middle_block.", "output_blocks.", "time_embed.", "out.")

_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
           ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection"))
_RESNET_D2L = dict(_RESNET)
_RESNET_L2D = {ldm: dif for dif, ldm in _RESNET}


@dataclasses.dataclass(frozen=True)
class UNetLayout:
    """Block structure: ``levels`` resolutions, ``layers`` res blocks per down level, attention flags."""
    levels: int
    layers: int
    down_attn: Tuple[bool, ...]
    up_attn: Tuple[bool, ...]
    mid_attn: bool = True
    add_embedding: bool = False


def _indices(keys: Iterable[str], pattern: str) -> List[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys for m in [rx.match(k)] if m})


def layout_from_diffusers(keys: Iterable[str]) -> UNetLayout:
    keys = list(keys)
    levels = len(_indices(keys, r"down_blocks\.(\d+)\."))
    layers = len(_indices(keys, r"down_blocks\.0\.resnets\.(\d+)\."))
    if levels == 0 or layers == 0:
        raise KeyError("no diffusers down_blocks.*.resnets.* keys: not a diffusers UNet state dict")
    down = tuple(any(k.startswith(f"down_blocks.{b}.attentions.") for k in keys) for b in range(levels))
    up = tuple(any(k.startswith(f"up_blocks.{b}.attentions.") for k in keys) for b in range(levels))
    return UNetLayout(levels, layers, down, up, any(k.startswith("mid_block.attentions.") for k in keys),
                      any(k.startswith("add_embedding.") for k in keys))


def layout_from_ldm(keys: Iterable[str]) -> UNetLayout:
    keys = list(keys)
    n_out = len(_indices(keys, r"output_blocks\.(\d+)\."))
    ops = _indices(keys, r"input_blocks\.(\d+)\.0\.op\.")
    n_in = len(_indices(keys, r"input_blocks\.(\d+)\."))
    if n_out == 0 or n_in == 0:
        raise KeyError("no ldm input_blocks/output_blocks keys: not an ldm UNet state dict")
    layers = ops[0] - 1 if ops else n_in - 1
    levels = n_out // (layers + 1)
    down = tuple(any(k.startswith(f"input_blocks.{b * (layers + 1) + 1}.1.") for k in keys) for b in range(levels))
    up = tuple(any(k.startswith(f"output_blocks.{b * (layers + 1)}.1.") for k in keys) for b in range(levels))
    return UNetLayout(levels, layers, down, up, any(k.startswith("middle_block.1.") for k in keys),
                      any(k.startswith("label_emb.0.0.") for k in keys))


def block_pairs(layout: UNetLayout) -> List[Tuple[str, str, str]]:
    """(diffusers prefix, ldm prefix, kind) for every block; kind is 'resnet', 'attn' or 'plain'."""
    L = layout.layers
    pairs = [("conv_in", "input_blocks.0.0", "plain"),
             ("time_embedding.linear_1", "time_embed.0", "plain"),
             ("time_embedding.linear_2", "time_embed.2", "plain"),
             ("conv_norm_out", "out.0", "plain"), ("conv_out", "out.2", "plain")]
    if layout.add_embedding:
        pairs += [("add_embedding.linear_1", "label_emb.0.0", "plain"),
                  ("add_embedding.linear_2", "label_emb.0.2", "plain")]
    for b in range(layout.levels):
        for j in range(L):
            n = b * (L + 1) + j + 1
            pairs.append((f"down_blocks.{b}.resnets.{j}", f"input_blocks.{n}.0", "resnet"))
            if layout.down_attn[b]:
                pairs.append((f"down_blocks.{b}.attentions.{j}", f"input_blocks.{n}.1", "attn"))
        if b < layout.levels - 1:
            pairs.append((f"down_blocks.{b}.downsamplers.0.conv", f"input_blocks.{(b + 1) * (L + 1)}.0.op", "plain"))
    pairs.append(("mid_block.resnets.0", "middle_block.0", "resnet"))
    if layout.mid_attn:
        pairs += [("mid_block.attentions.0", "middle_block.1", "attn"),
                  ("mid_block.resnets.1", "middle_block.2", "resnet")]
    else:
        pairs.append(("mid_block.resnets.1", "middle_block.1", "resnet"))
    for b in range(layout.levels):
        for j in range(L + 1):
            n = b * (L + 1) + j
            pairs.append((f"up_blocks.{b}.resnets.{j}", f"output_blocks.{n}.0", "resnet"))
            if layout.up_attn[b]:
                pairs.append((f"up_blocks.{b}.attentions.{j}", f"output_blocks.{n}.1", "attn"))
        if b < layout.levels - 1:
            slot = 2 if layout.up_attn[b] else 1
            pairs.append((f"up_blocks.{b}.upsamplers.0.conv", f"output_blocks.{b * (L + 1) + L}.{slot}.conv", "plain"))
    return pairs


def _map(keys: Iterable[str], table: Dict[str, Tuple[str, str]], suffixes: Dict[str, str]) -> Dict[str, str]:
    out, unknown = {}, []
    for key in keys:
        parts = key.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            hit = table.get(".".join(parts[:cut]))
            if hit is None:
                continue
            target, kind = hit
            rest = parts[cut:]
            if kind == "resnet":
                head = ".".join(rest[:-1])
                mapped = suffixes.get(head)
                if mapped is None:
                    break
                rest = mapped.split(".") + rest[-1:]
            out[key] = ".".join([target] + rest)
            break
        else:
            unknown.append(key)
            continue
        if key not in out:
            unknown.append(key)
    if unknown:
        raise KeyError(f"{len(unknown)} key(s) match no UNet block, e.g. {', '.join(sorted(unknown)[:4])}")
    return out


def diffusers_to_ldm(keys: Iterable[str], layout: UNetLayout = None) -> Dict[str, str]:
    """Map diffusers UNet keys to ldm keys (no prefix). Raises ``KeyError`` naming unmatched keys."""
    keys = list(keys)
    layout = layout or layout_from_diffusers(keys)
    table = {d: (l, kind) for d, l, kind in block_pairs(layout)}
    return _map(keys, table, _RESNET_D2L)


def ldm_to_diffusers(keys: Iterable[str], layout: UNetLayout = None) -> Dict[str, str]:
    """Map bare ldm UNet keys to diffusers keys. Raises ``KeyError`` naming unmatched keys."""
    keys = list(keys)
    layout = layout or layout_from_ldm(keys)
    table = {l: (d, kind) for d, l, kind in block_pairs(layout)}
    return _map(keys, table, _RESNET_L2D)


def key_format(keys: Iterable[str]) -> str:
    """'diffusers', 'ldm' or 'unknown' for a set of UNet keys (ldm keys may carry a model prefix)."""
    keys = [strip_ldm_prefix(k) for k in keys]
    dif = sum(k.startswith(DIFFUSERS_MARKERS) for k in keys)
    ldm = sum(k.startswith(LDM_MARKERS) for k in keys)
    if dif and not ldm:
        return "diffusers"
    if ldm and not dif:
        return "ldm"
    return "unknown"


def to_ldm_keys(keys: Iterable[str]) -> Dict[str, str]:
    """Map the keys of a UNet state dict in any accepted form to bare ldm keys: {ldm_key: original_key}.

    Accepted: diffusers names, bare ldm names, or ldm names prefixed ``diffusion_model.`` or
    ``model.diffusion_model.``. Raises ``KeyError`` for mixed or unknown names."""
    keys = list(keys)
    fmt = key_format(keys)
    if fmt == "diffusers":
        return {ldm: dif for dif, ldm in diffusers_to_ldm(keys).items()}
    if fmt == "ldm":
        out = {}
        for k in keys:
            bare = strip_ldm_prefix(k)
            if not bare.startswith(LDM_MARKERS):
                raise KeyError(f"key {k!r} is not a UNet key")
            if bare in out:
                raise KeyError(f"key {bare!r} appears twice (with and without a prefix)")
            out[bare] = k
        return out
    sample = ", ".join(sorted(keys)[:4])
    raise KeyError(f"keys are neither diffusers nor ldm UNet names (e.g. {sample})")
