"""HiDiffusion's patch set on a Forge-family host with `ldm_patched` (reForge, Forge Classic, Forge 1.x).

What runs how there (ldm_patched/ldm/modules/diffusionmodules/openaimodel.py):
- `UNetModel._forward` runs each input/middle/output block with `forward_timestep_embed(module, h, emb, ...)`, a
  plain function iterating the block's layers: the blocks' own `forward` (and any instance wrapper on it) never
  runs. HiDiffusion's avg-pool after `input_blocks[pool_input]` and bicubic after `output_blocks[bicubic_output]`
  therefore go through the patcher's block patches instead: `input_block_patch(h, transformer_options)` runs on
  each input block's output before it is kept as a skip (`transformer_options["block"] == ("input", i)`), and
  `output_block_patch(h, hsp, transformer_options)` on the previous block's output before output block `i` joins
  it with its skip (`("output", i)`), so the bicubic after output block k is the output patch of block k + 1.
  Same tensors as the A1111 wrappers: the pooled map is both the skip and the next block's input.
- inside a block, `forward_timestep_embed` calls each layer through `nn.Module.__call__`: `layer(x)` for
  Downsample, `layer(x, output_shape=...)` for Upsample, `layer(x, context, transformer_options)` for
  SpatialTransformer, whose BasicTransformerBlocks call `self.attn1(n, context=None, value=None)`. The instance
  wrappers of RAD/RAU (Downsample/Upsample) and MSW-MSA (SpatialTransformer, attn1) run unchanged (they pass
  extra arguments through), unless a patch of another extension replaces the call: a `forward_timestep_embed_patch`
  for Downsample/Upsample, or an `attn1` replace patch on a windowed block (BasicTransformerBlock then calls
  to_q/to_k/to_v and the patch, never `attn1`). Those are refused (`bypasses`), never silently skipped.
- the patcher: `p.sd_model.forge_objects.unet` (UnetPatcher). `processing` sets `forge_objects` to a fresh
  `forge_objects_after_applying_lora.shallow_copy()` right before every `process_before_every_sampling` (txt2img
  sample, sample_hr_pass, img2img sample), so a patched `clone()` assigned there lives for one pass
  (the pattern of the built-in Kohya HRFix extension, extensions-builtin/sd_forge_kohya_hrfix). `remove` also puts
  the host's patcher back if our clone is still in place. `clone()`, `set_model_input_block_patch`,
  `set_model_output_block_patch` and `model_options["transformer_options"]` are ModelPatcher's
  (ldm_patched/modules/model_patcher.py); the UNet sampled is `forge_objects.unet.model.diffusion_model`, the same
  module as `sd_model.model.diffusion_model` (modules_forge/forge_loader.load_model_for_a1111).
"""
from __future__ import annotations

from typing import List

from .libs import lib


def pool_patch(block_index: int, state):
    body = lib("lib_hidiffusion.rau_net").pool_body(state)

    def input_block_patch(h, transformer_options):
        if tuple(transformer_options.get("block", ())) != ("input", block_index):
            return h
        return body(lambda: h)
    return input_block_patch


def bicubic_patch(block_index: int, state):
    """Bicubic after output block `block_index` = before output block `block_index + 1` joins its skip."""
    body = lib("lib_hidiffusion.rau_net").bicubic_body(state)

    def output_block_patch(h, hsp, transformer_options):
        if tuple(transformer_options.get("block", ())) != ("output", block_index + 1):
            return h, hsp
        return body(lambda: h), hsp
    return output_block_patch


def bypasses(patcher, config) -> List[str]:
    """What of `config` another extension's patches on `patcher` would bypass (empty: nothing)."""
    options = (getattr(patcher, "model_options", None) or {}).get("transformer_options", {})
    found = []
    if config.rau_net:
        for entry in options.get("patches", {}).get("forward_timestep_embed_patch", []):
            cls = entry[0] if isinstance(entry, (tuple, list)) and entry else None
            if getattr(cls, "__name__", "") in ("Downsample", "Upsample"):
                found.append(f"a forward_timestep_embed_patch for {cls.__name__} (RAU-Net)")
    if config.msw_msa:
        replaced = options.get("patches_replace", {}).get("attn1", {})
        names = {"input_blocks": "input", "output_blocks": "output"}
        windowed = {(names[part], index) for part, index, _ in config.blocks.window_blocks}
        hits = sorted({tuple(key[:2]) for key in replaced if tuple(key[:2]) in windowed})
        found += [f"an attn1 replace patch on {b} block {i} (MSW-MSA)" for b, i in hits]
    return found


class BlockPatches:
    """The pool/bicubic block patches of the armed passes, and the host patchers they replaced."""

    def __init__(self):
        self._installed = []  # (forge_objects, host patcher, our clone)

    def install(self, forge_objects, config, state) -> None:
        blocks = config.blocks
        host = forge_objects.unet
        clone = host.clone()
        clone.set_model_input_block_patch(pool_patch(blocks.pool_input, state))
        clone.set_model_output_block_patch(bicubic_patch(blocks.bicubic_output, state))
        forge_objects.unet = clone
        self._installed.append((forge_objects, host, clone))

    def remove_all(self) -> None:
        while self._installed:
            forge_objects, host, clone = self._installed.pop()
            if getattr(forge_objects, "unet", None) is clone:
                forge_objects.unet = host
