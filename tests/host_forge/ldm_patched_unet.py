"""The ldm_patched UNet call structure over the tiny ldm UNet: class swaps (parameters and module tree unchanged).

Follows reForge ldm_patched/ldm/modules/diffusionmodules/openaimodel.py and ldm_patched/ldm/modules/attention.py:
- `UNetModel._forward(x, timesteps, context, y, control, transformer_options)`: `transformer_options["block"]` is
  ("input", i) / ("middle", 0) / ("output", i) while a block runs; each block through `forward_timestep_embed`;
  `input_block_patch(h, to)` after each input block before the skip is kept, `input_block_patch_after_skip`,
  `output_block_patch(h, hsp, to)` before each output block joins its skip (a plain `torch.cat`, no WebUI hijack),
  `output_shape = hs[-1].shape` for the block's Upsample.
- `forward_timestep_embed(ts, x, emb, context, transformer_options, output_shape)`: iterates the block's layers
  (never calls the block's forward): TimestepBlock `layer(x, emb)`, SpatialTransformer
  `layer(x, context, transformer_options)` (then `transformer_index += 1`), Upsample
  `layer(x, output_shape=output_shape)`, others `layer(x)` unless a `forward_timestep_embed_patch` for their class.
- `Upsample.forward(x, output_shape=None)`: nearest to output_shape[2:] (else 2x), then the conv.
- `SpatialTransformer.forward(x, context=None, transformer_options={})`: sets `block_index` per transformer block.
- `BasicTransformerBlock.forward(x, context=None, transformer_options={})`: attn1 patches
  `(n, context_attn1, value_attn1, extra_options)`, an `attn1` replace patch keyed (block name, id, block_index)
  or (block name, id) that replaces the call of `attn1` by to_q/to_k/to_v + patch + to_out, else
  `self.attn1(n, context=context_attn1, value=value_attn1)`; attn2 and the feed-forward as ldm.
- `CrossAttention.forward(x, context=None, value=None, mask=None)`: k from context (else x), v from value (else
  context). With v from the same tensor as k this is ldm's math (the A1111 double's), else plain softmax attention.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from ldm.modules import attention as ldm_attention
from ldm.modules.diffusionmodules import openaimodel as ldm_openaimodel
from ldm.modules.diffusionmodules.util import timestep_embedding
from torch import nn


class Upsample(ldm_openaimodel.Upsample):
    def forward(self, x, output_shape=None):
        size = [x.shape[2] * 2, x.shape[3] * 2] if output_shape is None else [output_shape[2], output_shape[3]]
        x = F.interpolate(x, size=size, mode="nearest")
        return self.conv(x) if self.use_conv else x


class CrossAttention(ldm_attention.CrossAttention):
    def forward(self, x, context=None, value=None, mask=None):
        if value is None or value is context:
            return super().forward(x, context=context, mask=mask)
        context = x if context is None else context
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(value)
        b, h = q.shape[0], self.heads
        q, k, v = (t.reshape(b, t.shape[1], h, -1).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.to_out(out.transpose(1, 2).reshape(b, -1, q.shape[-1] * h))


class BasicTransformerBlock(ldm_attention.BasicTransformerBlock):
    def forward(self, x, context=None, transformer_options={}):
        block = transformer_options.get("block")
        block_index = transformer_options.get("block_index", 0)
        patches = transformer_options.get("patches", {})
        replace = transformer_options.get("patches_replace", {}).get("attn1", {})
        extra_options = {k: v for k, v in transformer_options.items() if k not in ("patches", "patches_replace")}
        n = self.norm1(x)
        context_attn1 = context if self.disable_self_attn else None
        value_attn1 = None
        if "attn1_patch" in patches:
            if context_attn1 is None:
                context_attn1 = n
            value_attn1 = context_attn1
            for patch in patches["attn1_patch"]:
                n, context_attn1, value_attn1 = patch(n, context_attn1, value_attn1, extra_options)
        key = (block[0], block[1], block_index) if block is not None else None
        if key not in replace:
            key = block
        if key in replace:
            if context_attn1 is None:
                context_attn1 = value_attn1 = n
            n = self.attn1.to_out(replace[key](self.attn1.to_q(n), self.attn1.to_k(context_attn1),
                                               self.attn1.to_v(value_attn1), extra_options))
        else:
            n = self.attn1(n, context=context_attn1, value=value_attn1)
        x = n + x
        x = self.attn2(self.norm2(x), context=context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(ldm_attention.SpatialTransformer):
    def forward(self, x, context=None, transformer_options={}):
        contexts = context if isinstance(context, list) else [context] * len(self.transformer_blocks)
        b, c, h, w = x.shape
        x_in = x
        x = self.norm(x)
        if not self.use_linear:
            x = self.proj_in(x)
        x = x.movedim(1, 3).flatten(1, 2).contiguous()
        if self.use_linear:
            x = self.proj_in(x)
        for i, block in enumerate(self.transformer_blocks):
            transformer_options["block_index"] = i
            x = block(x, context=contexts[i], transformer_options=transformer_options)
        if self.use_linear:
            x = self.proj_out(x)
        x = x.reshape(b, h, w, -1).movedim(3, 1).contiguous()
        if not self.use_linear:
            x = self.proj_out(x)
        return x + x_in


def forward_timestep_embed(ts, x, emb, context=None, transformer_options={}, output_shape=None):
    for layer in ts:
        if isinstance(layer, ldm_openaimodel.TimestepBlock):
            x = layer(x, emb)
        elif isinstance(layer, ldm_attention.SpatialTransformer):
            x = layer(x, context, transformer_options)
            if "transformer_index" in transformer_options:
                transformer_options["transformer_index"] += 1
        elif isinstance(layer, ldm_openaimodel.Upsample):
            x = layer(x, output_shape=output_shape)
        else:
            handler = next((h for cls, h in transformer_options.get("patches", {}).get(
                "forward_timestep_embed_patch", []) if isinstance(layer, cls)), None)
            x = layer(x) if handler is None else handler(layer, x, emb, context, transformer_options, output_shape,
                                                         None, None, None)
    return x


class UNetModel(ldm_openaimodel.UNetModel):
    def forward(self, x, timesteps=None, context=None, y=None, control=None, transformer_options={}, **kwargs):
        transformer_options["original_shape"] = list(x.shape)
        transformer_options["transformer_index"] = 0
        patches = transformer_options.get("patches", {})
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels, repeat_only=False).to(x.dtype))
        if self.num_classes is not None:
            emb = emb + self.label_emb(y)
        hs, h = [], x
        for index, module in enumerate(self.input_blocks):
            transformer_options["block"] = ("input", index)
            h = forward_timestep_embed(module, h, emb, context, transformer_options)
            for patch in patches.get("input_block_patch", []):
                h = patch(h, transformer_options)
            hs.append(h)
            for patch in patches.get("input_block_patch_after_skip", []):
                h = patch(h, transformer_options)
        transformer_options["block"] = ("middle", 0)
        h = forward_timestep_embed(self.middle_block, h, emb, context, transformer_options)
        for index, module in enumerate(self.output_blocks):
            transformer_options["block"] = ("output", index)
            hsp = hs.pop()
            for patch in patches.get("output_block_patch", []):
                h, hsp = patch(h, hsp, transformer_options)
            h = torch.cat([h, hsp], dim=1)
            output_shape = hs[-1].shape if hs else None
            h = forward_timestep_embed(module, h, emb, context, transformer_options, output_shape)
        return self.out(h.type(x.dtype))


_SWAPS = ((ldm_openaimodel.UNetModel, UNetModel), (ldm_openaimodel.Upsample, Upsample),
          (ldm_attention.SpatialTransformer, SpatialTransformer),
          (ldm_attention.BasicTransformerBlock, BasicTransformerBlock),
          (ldm_attention.CrossAttention, CrossAttention))


def to_ldm_patched(unet: nn.Module) -> nn.Module:
    """Give the ldm modules of an SD 1.x-layout `unet` reForge's call structure in place; idempotent."""
    for module in unet.modules():
        for ldm_cls, patched_cls in _SWAPS:
            if type(module) is ldm_cls:
                module.__class__ = patched_cls
    return unet


def to_ldm(unet: nn.Module) -> nn.Module:
    """Undo `to_ldm_patched`."""
    for module in unet.modules():
        for ldm_cls, patched_cls in _SWAPS:
            if type(module) is patched_cls:
                module.__class__ = ldm_cls
    return unet
