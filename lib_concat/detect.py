"""Tell concat-conditioned UNet families apart from a UNet state dict (ldm or diffusers names).

Features read (shapes only, nothing is computed on the tensors):

- ``in_channels``: input channels of the first conv (``input_blocks.0.0.weight`` / ``conv_in.weight``)
- ``model_channels``: its output channels (320 for SD 1.x/2.x/XL, 256 for the x4 upscaler)
- ``context_dim``: in-features of a cross-attention key projection (``attn2.to_k``): 768 SD 1.x,
  1024 SD 2.x, 2048 SDXL, 1280 SDXL refiner
- a noise-level class embedding: ``label_emb.weight`` / ``class_embedding.weight`` (an ``nn.Embedding``,
  the x4 upscaler's; SDXL's vector MLP is ``label_emb.0.0.weight`` and does not count)

========  ==========================================  =============================================
channels  kind                                        needs
========  ==========================================  =============================================
4         ``txt2img``                                 any base
5         ``depth`` (SD 2 depth)                      context 1024
7         ``upscale_x4``                              context 1024, noise-level Embedding, 256 ch
8         ``iclight_fc`` or ``edit`` (InstructPix2Pix) SD 1.x context: ambiguous, the user decides;
                                                      other contexts (SDXL edit): ``edit`` only
9         ``inpaint``                                 any base
12        ``iclight_fbc``                             context 768
========  ==========================================  =============================================
Anything else, or a channel count whose other features do not fit, is ``unknown`` with a reason.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Tuple

from .keys import strip_ldm_prefix

CONTEXT_FAMILY = {768: "sd15", 1024: "sd2", 2048: "sdxl", 1280: "sdxl_refiner"}


@dataclasses.dataclass(frozen=True)
class ModelKind:
    """Result of :func:`detect_model_kind`. ``candidates`` has >1 entry when the state dict alone
    cannot decide (then ``kind`` is ``'ambiguous'``)."""
    kind: str
    candidates: Tuple[str, ...]
    base_family: str
    in_channels: Optional[int]
    reason: str
    context_dim: Optional[int] = None
    model_channels: Optional[int] = None

    @property
    def ambiguous(self) -> bool:
        return len(self.candidates) > 1


def _shape(value):
    shape = getattr(value, "shape", value)
    return tuple(int(s) for s in shape)


def _unet_entries(state_dict: Mapping) -> dict:
    """UNet entries with bare names; a full checkpoint's ``model.diffusion_model.`` part is selected."""
    keys = list(state_dict.keys())
    if any(k.startswith("model.diffusion_model.") for k in keys):
        return {k[len("model.diffusion_model."):]: v for k, v in state_dict.items()
                if k.startswith("model.diffusion_model.")}
    return {strip_ldm_prefix(k): v for k, v in state_dict.items()}


def _features(sd: dict):
    conv = sd.get("input_blocks.0.0.weight", sd.get("conv_in.weight"))
    in_ch = out_ch = None
    if conv is not None:
        shape = _shape(conv)
        out_ch, in_ch = shape[0], shape[1]
    context = None
    for k in sorted(sd):
        if k.endswith("attn2.to_k.weight"):
            context = _shape(sd[k])[1]
            break
    noise_embedding = "label_emb.weight" in sd or "class_embedding.weight" in sd
    return in_ch, out_ch, context, noise_embedding


def detect_model_kind(state_dict: Mapping) -> ModelKind:
    """Classify a UNet state dict (values may be tensors or shapes). See the module doc for the table."""
    sd = _unet_entries(state_dict)
    in_ch, out_ch, context, noise_emb = _features(sd)
    if in_ch is None:
        return ModelKind("unknown", (), "unknown", None, "no first convolution (input_blocks.0.0 / conv_in) found")
    family = CONTEXT_FAMILY.get(context, "unknown")
    facts = f"{in_ch} input channels, context {context}, {out_ch} base channels"

    def kind(name, why, base=family, candidates=None):
        return ModelKind(name, tuple(candidates or (name,)), base, in_ch, f"{facts}: {why}", context, out_ch)

    def unknown(why):
        return ModelKind("unknown", (), family, in_ch, f"{facts}: {why}", context, out_ch)

    if in_ch == 4:
        return kind("txt2img", "latent only") if family != "unknown" else unknown("unrecognised context width")
    if in_ch == 5:
        if context == 1024 and not noise_emb:
            return kind("depth", "latent + depth map (SD 2 depth)", base="sd2")
        return unknown("5 channels is SD 2 depth, which has context 1024")
    if in_ch == 7:
        if noise_emb and context == 1024 and out_ch == 256:
            return kind("upscale_x4", "latent + low-res RGB, noise-level class embedding (x4 upscaler)", base="sd2")
        return unknown("7 channels is the x4 upscaler, which has context 1024, 256 channels and a noise-level embedding")
    if in_ch == 8:
        if family == "sd15":
            return ModelKind("ambiguous", ("edit", "iclight_fc"), family, in_ch,
                             f"{facts}: 8 channels on SD 1.x is either InstructPix2Pix or IC-Light fc; "
                             "the weights alone cannot tell, choose the mode", context, out_ch)
        if family in ("sdxl", "sd2"):
            return kind("edit", "latent + image latent on a non-SD1 base (IC-Light exists for SD 1.5 only)")
        return unknown("8 channels with an unrecognised context width")
    if in_ch == 9:
        if family != "unknown":
            return kind("inpaint", "latent + mask + masked image")
        return unknown("9 channels (inpainting) with an unrecognised context width")
    if in_ch == 12:
        if family == "sd15":
            return kind("iclight_fbc", "latent + foreground + background latents (IC-Light fbc)")
        return unknown("12 channels is IC-Light fbc, which is SD 1.5 (context 768)")
    return unknown("no known model takes this many input channels")
