"""Make a tiny ldm SDXL-layout UNet behave like the sgm `UNetModel` the WebUI runs for SDXL.

The WebUI's SDXL UNet is `sgm.modules.diffusionmodules.openaimodel.UNetModel` from Stability-AI/generative-models
at the commit WebUI v1.10.1 pins (45c443b316737a4ab6e40413d7794a7f5657c19f, `launch_utils.prepare_environment`);
it is not installable from a registry, so the tiny SDXL model is the ldm class (cf1d67a) with the differences
below emulated. Read against sgm/modules/attention.py and sgm/modules/diffusionmodules/openaimodel.py at that
commit. What our cores rely on, and how sgm has it:

- `unet.input_blocks` / `middle_block` / `output_blocks`: `TimestepEmbedSequential`s; `forward(x, emb,
  context=None, ...)` (sgm adds video-only keywords), called positionally `module(h, emb, context)` by
  `UNetModel.forward(x, timesteps=None, context=None, y=None, **kwargs)`; skips joined with `th.cat` (the
  WebUI's `sd_hijack_unet.th` in both ldm and sgm). Same as ldm, except sgm does not cast `h = x.type(dtype)`.
- `Downsample(channels, use_conv, dims=2, out_channels=None, padding=1)`: `.op` a Conv2d (stride 2) when
  `use_conv`, `forward(x)`. `Upsample(channels, use_conv, dims=2, out_channels=None, padding=1)`: nearest 2x then
  `.conv`, `forward(x)`, attribute `use_conv`. Same as ldm (sgm adds `third_down` / `third_up` for 3D only).
  Cores find them by class name (`type(m).__name__`), so the names must stay "Downsample" / "Upsample".
- `SpatialTransformer.forward(x, context=None)`: sgm wraps a non-list context in a list and gives every
  `transformer_blocks[i]` `context[0]` when one context is given; ldm at cf1d67a indexes `context[i]` and needs a
  list of `depth` contexts. The WebUI's `OpenAIWrapper` passes one tensor (`context=c["crossattn"]`,
  `timesteps=t`, `y=c["vector"]` as keywords). EMULATED (`SpatialTransformer` here, and `TinyLDM.apply_model`).
- `BasicTransformerBlock`: `forward(x, context=None, additional_tokens=None, n_times_crossframe_attn_in_self=0)`
  runs `checkpoint(self._forward, (x, context), self.parameters(), self.checkpoint)` (the WebUI sets
  `use_checkpoint=False` for every UNet, so `_forward(x, context)` is called directly, the two extras at their
  defaults), and `_forward` calls `self.attn1(self.norm1(x), context=None (unless disable_self_attn),
  additional_tokens=None, n_times_crossframe_attn_in_self=0)` and `self.attn2(self.norm2(x), context=context,
  additional_tokens=None)`: attn1 and attn2 get two keywords ldm never passes. EMULATED (`BasicTransformerBlock`).
- `attn1` / `attn2`: sgm `CrossAttention` (or `MemoryEfficientCrossAttention` with xformers installed, whose
  forward the WebUI does not replace) with `to_q/to_k/to_v/to_out`, `heads`; the WebUI replaces
  `sgm.modules.attention.CrossAttention.forward` at class level with its optimisation, signature
  `(self, x, context=None, mask=None, **kwargs)` (the extra keywords are accepted and ignored). EMULATED:
  `CrossAttention.forward` here accepts exactly sgm's keywords and requires them at the values the WebUI's
  blocks pass, so a wrapper around attn1 must pass keywords through (a fixed `(x, context=None, mask=None)`
  signature fails with TypeError, as it would on sgm).
- `label_emb` (SDXL "sequential"): `Sequential(Sequential(Linear(adm_in, T), SiLU, Linear(T, T)))`, keys
  `label_emb.0.0.*` / `label_emb.0.2.*`; `y` is the [B, adm_in] vector. EMULATED in `tiny_models`.
- Not emulated (not used by our cores): sgm `NoTimeUNetModel`, video/time mixing, `spatial_transformer_attn_type`,
  fairscale checkpointing.
"""
from __future__ import annotations

from ldm.modules import attention as ldm_attention
from torch import nn


class CrossAttention(ldm_attention.CrossAttention):
    """sgm CrossAttention's call signature over ldm's math (the WebUI's replacement forward ignores the extras)."""

    def forward(self, x, context=None, mask=None, additional_tokens=None, n_times_crossframe_attn_in_self=0):
        if additional_tokens is not None or n_times_crossframe_attn_in_self:
            raise NotImplementedError("the WebUI's SDXL blocks never pass additional tokens or cross-frame attention")
        return super().forward(x, context=context, mask=mask)


class BasicTransformerBlock(ldm_attention.BasicTransformerBlock):
    """sgm BasicTransformerBlock.forward/_forward: attn1/attn2 get sgm's extra keywords."""

    def forward(self, x, context=None, additional_tokens=None, n_times_crossframe_attn_in_self=0):
        return self._forward(x, context)  # checkpoint(..., (x, context), ..., flag False): the extras are dropped

    def _forward(self, x, context=None, additional_tokens=None, n_times_crossframe_attn_in_self=0):
        x = self.attn1(self.norm1(x), context=context if self.disable_self_attn else None,
                       additional_tokens=additional_tokens,
                       n_times_crossframe_attn_in_self=0 if self.disable_self_attn else n_times_crossframe_attn_in_self) + x
        x = self.attn2(self.norm2(x), context=context, additional_tokens=additional_tokens) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(ldm_attention.SpatialTransformer):
    """sgm SpatialTransformer.forward: one context (tensor or one-element list) serves every block."""

    def forward(self, x, context=None):
        contexts = context if isinstance(context, list) else [context]
        b, c, h, w = x.shape
        x_in = x
        x = self.norm(x)
        if not self.use_linear:
            x = self.proj_in(x)
        x = x.permute(0, 2, 3, 1).reshape(b, h * w, -1).contiguous()
        if self.use_linear:
            x = self.proj_in(x)
        for i, block in enumerate(self.transformer_blocks):
            x = block(x, context=contexts[i if len(contexts) > 1 else 0])
        if self.use_linear:
            x = self.proj_out(x)
        x = x.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()
        if not self.use_linear:
            x = self.proj_out(x)
        return x + x_in


_SWAPS = ((ldm_attention.SpatialTransformer, SpatialTransformer),
          (ldm_attention.BasicTransformerBlock, BasicTransformerBlock),
          (ldm_attention.CrossAttention, CrossAttention))


def to_sgm(unet: nn.Module) -> nn.Module:
    """Give the ldm modules of `unet` the sgm behaviour above in place (class swap; parameters, buffers and the
    module tree unchanged). Idempotent."""
    for module in unet.modules():
        for ldm_cls, sgm_cls in _SWAPS:
            if type(module) is ldm_cls:
                module.__class__ = sgm_cls
    return unet


def sequential_label_emb(adm_in_channels: int, time_embed_dim: int) -> nn.Sequential:
    """sgm UNetModel's `label_emb` for num_classes 'sequential'."""
    return nn.Sequential(nn.Sequential(nn.Linear(adm_in_channels, time_embed_dim), nn.SiLU(),
                                       nn.Linear(time_embed_dim, time_embed_dim)))


class AutoencoderKL(nn.Module):
    """sgm `AutoencoderKL` at the pinned commit, its inference parts: `encoder` / `decoder` (ldm's
    `diffusionmodules.model` Encoder / Decoder, which sgm's are a copy of), `quant_conv` / `post_quant_conv`;
    `encode(x)` returns the `DiagonalGaussianDistribution` of the moments, `decode(z)` the image. Same state-dict
    keys as the released SD / SDXL VAEs (`first_stage_model.` + these names)."""

    def __init__(self, ddconfig: dict, embed_dim: int = 4):
        from ldm.modules.diffusionmodules.model import Decoder, Encoder
        super().__init__()
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig)
        self.quant_conv = nn.Conv2d(2 * ddconfig["z_channels"], 2 * embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, ddconfig["z_channels"], 1)

    def encode(self, x):
        from ldm.modules.distributions.distributions import DiagonalGaussianDistribution
        return DiagonalGaussianDistribution(self.quant_conv(self.encoder(x)))

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))


class AutoencoderKLInferenceWrapper(AutoencoderKL):
    """sgm `AutoencoderKLInferenceWrapper` (the WebUI's SDXL VAE, `first_stage_config` of sd_xl_base.yaml):
    `encode` returns a *sample* of the posterior, not the posterior."""

    def encode(self, x):
        return super().encode(x).sample()
