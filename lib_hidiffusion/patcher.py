"""Apply/remove HiDiffusion on an ldm (SD1/SD2) or sgm (SDXL) ``UNetModel``, by submodule wrappers only.

``apply(unet, config, state)`` installs instance-level forward wrappers (see ``wrap``) on:
every Downsample and Upsample (the RAD/RAU pair if the family has them; the others record/resize to the skip
sizes, see ``rau_net``), the pool input block and bicubic output block (``config.rau_net``), the windowed
SpatialTransformers and their ``transformer_blocks[t].attn1`` (``config.msw_msa``). ``UNetModel.forward`` and every class are left alone; the module tree, parameters
and buffers are unchanged. All wrappers read ``state``: disarmed, each one calls the original forward
with the original arguments (bit-identical output).

A windowed transformer block missing from the UNet is skipped: the WebUI turns SSD-1B checkpoints into an SDXL
UNet without ``output_blocks[4|5][1].transformer_blocks[1]`` (``sd_hijack.convert_sdxl_to_ssd``); MSW-MSA then
windows the blocks that exist (each keeps its ordinal, hence its seeded shift).

``remove(unet)`` removes every wrapper of ours found anywhere in the UNet (also ones left by a crashed
generation or by another ``apply``), restoring each module's ``__dict__`` exactly; idempotent.
"""
from __future__ import annotations

from typing import List

from torch import nn

from . import wrap
from .msw_msa import msw_body, record_hw_body
from .presets import HiDiffusionConfig, layout_of
from .rau_net import bicubic_body, pool_body, rad_body, record_body, up_body


def _expect(module: nn.Module, cls_name: str, where: str) -> nn.Module:
    if type(module).__name__ != cls_name:
        raise ValueError(f"HiDiffusion: expected a {cls_name} at {where}, found {type(module).__name__}")
    return module


def _spatial_transformer(block: nn.Module, where: str):
    for i, layer in enumerate(block):
        if type(layer).__name__ == "SpatialTransformer":
            return i, layer
    raise ValueError(f"HiDiffusion: no SpatialTransformer in {where}")


def _resamplers(unet: nn.Module):
    """[(index, Downsample)] of the input blocks (top to bottom) and [(index, Upsample)] ending the output blocks
    (bottom to top); pairs are ``zip(downs[::-1], ups)``. ValueError if the counts differ."""
    downs = [(i, b[0]) for i, b in enumerate(unet.input_blocks) if type(b[0]).__name__ == "Downsample"]
    ups = [(i, b[-1]) for i, b in enumerate(unet.output_blocks) if type(b[-1]).__name__ == "Upsample"]
    if len(downs) != len(ups):
        raise ValueError(f"HiDiffusion: {len(downs)} Downsamples but {len(ups)} Upsamples in the UNet")
    return downs, ups


def apply(unet: nn.Module, config: HiDiffusionConfig, state) -> List[str]:
    """Patch ``unet`` for ``config`` (removing any earlier patch first); ``state.config`` is set to ``config``.
    Returns the patched module names. Raises ValueError (nothing patched) if the layout does not match."""
    remove(unet)
    layout = layout_of(unet)
    if (layout == "sd15") != (config.family in ("sd15", "sd21")):
        raise ValueError(f"HiDiffusion: config for {config.family!r} does not fit a {layout} UNet")
    blocks = config.blocks
    plan = []  # (name, module, body, tag), validated before anything is installed
    if config.rau_net:
        downs, ups = _resamplers(unet)
        if blocks.rad_input is not None:
            _expect(unet.input_blocks[blocks.rad_input][0], "Downsample", f"input_blocks.{blocks.rad_input}.0")
            _expect(unet.output_blocks[blocks.rau_output][-1], "Upsample", f"output_blocks.{blocks.rau_output}")
        for slot, ((down_index, down), (up_index, up)) in enumerate(zip(downs[::-1], ups)):
            if (down_index == blocks.rad_input) != (up_index == blocks.rau_output):
                raise ValueError(f"HiDiffusion: input_blocks.{down_index} and output_blocks.{up_index} are not "
                                 f"the resolution-aware pair of this layout")
            if down_index == blocks.rad_input:
                plan.append((f"input_blocks.{down_index}.0", down, rad_body(down, slot, state), "rad"))
                plan.append((f"output_blocks.{up_index}.{len(unet.output_blocks[up_index]) - 1}", up,
                             up_body(up, slot, state), "rau"))
            else:
                plan.append((f"input_blocks.{down_index}.0", down, record_body(slot, state), "down"))
                plan.append((f"output_blocks.{up_index}.{len(unet.output_blocks[up_index]) - 1}", up,
                             up_body(up, slot, state), "up"))
        plan.append((f"input_blocks.{blocks.pool_input}", unet.input_blocks[blocks.pool_input],
                     pool_body(state), "pool"))
        plan.append((f"output_blocks.{blocks.bicubic_output}", unet.output_blocks[blocks.bicubic_output],
                     bicubic_body(state), "bicubic"))
    if config.msw_msa:
        seen = {}
        n = len(blocks.window_blocks)
        for ordinal, (part, index, t) in enumerate(blocks.window_blocks):
            where = f"{part}.{index}"
            pos, st = _spatial_transformer(getattr(unet, part)[index], where)
            block = dict(st.transformer_blocks.named_children()).get(str(t))
            if block is None:  # SSD-1B: the WebUI deleted this transformer block; window the ones that exist
                continue
            if id(st) not in seen:
                seen[id(st)] = len(seen)
                plan.append((f"{where}.{pos}", st, record_hw_body(seen[id(st)], state), "record_hw"))
            attn1 = block.attn1
            plan.append((f"{where}.{pos}.transformer_blocks.{t}.attn1", attn1,
                         msw_body(seen[id(st)], ordinal, n, state), "msw"))
    state.config = config
    for _, module, body, tag in plan:
        wrap.install(module, body, tag)
    return [name for name, _, _, _ in plan]


def remove(unet: nn.Module) -> int:
    """Remove all HiDiffusion wrappers from ``unet``; returns how many modules were restored."""
    return sum(1 for module in unet.modules() if wrap.uninstall(module))


def is_patched(unet: nn.Module) -> bool:
    return any(wrap.is_wrapped(module) for module in unet.modules())
