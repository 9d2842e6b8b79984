"""Load the SD x4 upscaler's single-file checkpoint (``x4-upscaler-ema.safetensors``) into its own three models.

The file holds the UNet (``model.diffusion_model.*``), the VAE (``first_stage_model.*``) and the OpenCLIP text
tower (``cond_stage_model.model.*``). Their sizes are read from the tensor shapes; what the file does not store
comes from the official ``x4-upscaling.yaml``: 8 attention heads per UNet block, v-prediction, the training
schedule ("linear" betas 1e-4..2e-2 over 1000 steps, used both for the latent and for noising the low-res image),
``max_noise_level`` 350 and the latent scale 0.08333. Only the VAE's decoder is built (the upscaler starts from
noise; nothing is encoded).

Checks, each a :class:`ConcatError` naming the file and the fix: not a readable safetensors file, missing parts,
a UNet whose first convolution does not take 7 channels (4 latent + 3 image), no noise-level class embedding,
a VAE that does not downsample by 4, tensors that do not fit the inferred layout.
The UNet and decoder classes are ldm's (``UNetModel``, ``Decoder``), the WebUI's own (so its attention
optimisations apply); tests and other hosts may pass others with the same signature.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Callable, Mapping, Optional

import torch
from torch import nn

from .errors import ConcatError
from .x4_text import OpenCLIPText, TextConfig

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.model."
IN_CHANNELS = 7
LATENT_CHANNELS = 4
NUM_HEADS = 8
SCALE_FACTOR = 0.08333
MAX_NOISE_LEVEL = 350
VAE_DOWNSCALE = 4
TITLE = "SD x4 upscaler"


def linear_alphas_cumprod(steps: int = 1000, start: float = 1e-4, end: float = 2e-2) -> torch.Tensor:
    """ldm's "linear" schedule (sqrt-spaced betas, squared), as alphas_cumprod in float64."""
    betas = torch.linspace(start ** 0.5, end ** 0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def _error(path: str, text: str) -> ConcatError:
    return ConcatError(f"{TITLE}: {os.path.basename(path)} {text}")


def read_state_dict(path: str) -> dict:
    """All tensors of a .safetensors file (CPU); ConcatError for another format or an unreadable file."""
    if not path.lower().endswith(".safetensors"):
        raise _error(path, "is not a .safetensors file; download x4-upscaler-ema.safetensors "
                           "(stabilityai/stable-diffusion-x4-upscaler) instead of the .ckpt")
    try:
        from safetensors.torch import load_file
        return load_file(path, device="cpu")
    except FileNotFoundError:
        raise _error(path, "was not found; put x4-upscaler-ema.safetensors in the SD x4 models folder") from None
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise _error(path, f"could not be read ({type(exc).__name__}: {exc}); the file is damaged or incomplete, "
                           "download it again") from None


def _part(sd: Mapping, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


# --- UNet -------------------------------------------------------------------------------------------------
def unet_config(sd: Mapping, path: str = "") -> dict:
    """ldm ``UNetModel`` keyword arguments for the x4 UNet state dict ``sd`` (prefix removed)."""
    conv = sd.get("input_blocks.0.0.weight")
    if conv is None:
        raise _error(path, "has no UNet (model.diffusion_model.input_blocks.0.0.weight); it is not an SD checkpoint")
    model_channels, in_channels = int(conv.shape[0]), int(conv.shape[1])
    if in_channels != IN_CHANNELS:
        raise _error(path, f"is not the x4 upscaler: its UNet takes {in_channels} input channels, the x4 upscaler "
                           f"takes {IN_CHANNELS} (4 latent + 3 image). Put x4-upscaler-ema.safetensors in the folder.")
    if "label_emb.weight" not in sd:
        raise _error(path, "has a 7-channel UNet without the noise-level embedding (label_emb) of the x4 upscaler; "
                           "use x4-upscaler-ema.safetensors")
    blocks = sorted({int(m.group(1)) for k in sd for m in [re.match(r"input_blocks\.(\d+)\.", k)] if m})
    mults, per_level, attn1_keys, count = [], [], {}, 0
    for i in blocks[1:]:
        if f"input_blocks.{i}.0.op.weight" in sd:  # downsample: next level
            per_level.append(count)
            count = 0
            continue
        if count == 0:
            mults.append(int(sd[f"input_blocks.{i}.0.out_layers.3.weight"].shape[0]) // model_channels)
        count += 1
        key = f"input_blocks.{i}.1.transformer_blocks.0.attn1.to_k.weight"
        if key in sd:
            attn1_keys.setdefault(len(per_level), key)
    per_level.append(count)
    if len(set(per_level)) != 1:
        raise _error(path, f"has an irregular UNet layout (res blocks per level {per_level})")
    context = next(int(v.shape[1]) for k, v in sorted(sd.items()) if k.endswith("attn2.to_k.weight"))
    proj = next(v for k, v in sorted(sd.items()) if k.endswith("proj_in.weight"))
    depth = 1 + max(int(m.group(1)) for k in sd for m in [re.search(r"transformer_blocks\.(\d+)\.", k)] if m)
    disabled = [_self_attention_disabled(sd, attn1_keys.get(lvl), context, model_channels * mults[lvl], lvl, len(mults))
                for lvl in range(len(mults))]
    mid_key = "middle_block.1.transformer_blocks.0.attn1.to_k.weight"
    return dict(image_size=128, in_channels=in_channels, out_channels=int(sd["out.2.weight"].shape[0]),
                model_channels=model_channels, attention_resolutions=[2 ** lvl for lvl in sorted(attn1_keys)],
                num_res_blocks=per_level[0], channel_mult=mults, disable_self_attentions=disabled,
                disable_middle_self_attn=_self_attention_disabled(sd, mid_key, context, model_channels * mults[-1],
                                                                  len(mults), len(mults) + 1),
                num_heads=NUM_HEADS, use_spatial_transformer=True, transformer_depth=depth, context_dim=context,
                legacy=False, use_linear_in_transformer=proj.dim() == 2,
                num_classes=int(sd["label_emb.weight"].shape[0]),
                use_checkpoint=False)


def _self_attention_disabled(sd: Mapping, key: Optional[str], context: int, channels: int, level: int,
                             levels: int) -> bool:
    """ldm's `disable_self_attn` turns attn1 into cross-attention on the text: its key projection then reads
    `context` features instead of `channels`. When both are equal the shapes cannot tell; the official layout
    (every level but the last without self-attention, the middle block with it) decides; it also fills levels
    without attention, where the flag is unused."""
    if key is None:
        return level < levels - 1
    width = int(sd[key].shape[1])
    if width != channels or width != context:
        return width == context
    return level < levels - 1


# --- VAE decoder ----------------------------------------------------------------------------------------------
def decoder_config(sd: Mapping, path: str = "") -> dict:
    """ldm ``Decoder`` keyword arguments for ``first_stage_model.*`` (prefix removed)."""
    if "decoder.conv_in.weight" not in sd or "post_quant_conv.weight" not in sd:
        raise _error(path, "has no VAE decoder (first_stage_model.decoder / post_quant_conv); use the complete "
                           "x4-upscaler-ema.safetensors")
    levels = 1 + max(int(m.group(1)) for k in sd for m in [re.match(r"decoder\.up\.(\d+)\.", k)] if m)
    if 2 ** (levels - 1) != VAE_DOWNSCALE:
        raise _error(path, f"has a VAE that scales by {2 ** (levels - 1)}, the x4 upscaler's scales by "
                           f"{VAE_DOWNSCALE}; use x4-upscaler-ema.safetensors")
    ch = int(sd["decoder.conv_out.weight"].shape[1])
    mults = [int(sd[f"decoder.up.{i}.block.0.conv2.weight"].shape[0]) // ch for i in range(levels)]
    blocks = 1 + max(int(m.group(1)) for k in sd for m in [re.match(r"decoder\.up\.0\.block\.(\d+)\.", k)] if m)
    attn = [i for i in range(levels) if any(k.startswith(f"decoder.up.{i}.attn.") for k in sd)]
    return dict(ch=ch, out_ch=int(sd["decoder.conv_out.weight"].shape[0]), ch_mult=mults, num_res_blocks=blocks - 1,
                attn_resolutions=[256 // 2 ** i for i in attn], in_channels=3, resolution=256,
                z_channels=int(sd["decoder.conv_in.weight"].shape[1]), double_z=True, dropout=0.0)


class X4Decoder(nn.Module):
    """``post_quant_conv`` + ldm ``Decoder`` (the decoding half of ``AutoencoderKL``): latent / scale -> image."""

    def __init__(self, decoder: nn.Module, embed_dim: int, z_channels: int):
        super().__init__()
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        self.decoder = decoder

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))


# --- all three ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class X4Models:
    """The x4 upscaler's own modules and constants (CPU, float32 after loading)."""
    unet: nn.Module
    decoder: X4Decoder
    text: OpenCLIPText
    path: str = ""
    scale_factor: float = SCALE_FACTOR
    max_noise_level: int = MAX_NOISE_LEVEL
    alphas_cumprod: torch.Tensor = dataclasses.field(default_factory=linear_alphas_cumprod)
    low_res_alphas_cumprod: torch.Tensor = dataclasses.field(default_factory=linear_alphas_cumprod)

    def modules(self):
        return (self.unet, self.decoder, self.text)


def _load(module: nn.Module, sd: Mapping, what: str, path: str) -> None:
    missing, unexpected = module.load_state_dict(sd, strict=False)
    if missing or unexpected:
        problem = f"lacks {len(missing)} {what} tensors (e.g. {missing[0]})" if missing else \
            f"has {len(unexpected)} {what} tensors the layout does not use (e.g. {unexpected[0]})"
        raise _error(path, f"{problem}; the file is not the x4 upscaler or is incomplete")


def default_classes():
    """ldm's UNetModel and Decoder (the WebUI's copies)."""
    try:
        from ldm.modules.diffusionmodules.model import Decoder
        from ldm.modules.diffusionmodules.openaimodel import UNetModel
    except ImportError as exc:
        raise ConcatError(f"{TITLE} builds its models from ldm (Stability-AI's stablediffusion code, which the "
                          f"AUTOMATIC1111 WebUI ships); it could not be imported here ({exc}).") from None
    return UNetModel, Decoder


def build_models(sd: Mapping, path: str = "", unet_class: Optional[Callable] = None,
                 decoder_class: Optional[Callable] = None) -> X4Models:
    """The three models from a full x4 checkpoint state dict (``sd`` keys with their ldm prefixes)."""
    if unet_class is None or decoder_class is None:
        default_unet, default_decoder = default_classes()
        unet_class, decoder_class = unet_class or default_unet, decoder_class or default_decoder
    unet_sd, vae_sd, text_sd = _part(sd, UNET_PREFIX), _part(sd, VAE_PREFIX), _part(sd, TEXT_PREFIX)
    if not text_sd:
        raise _error(path, "has no text encoder (cond_stage_model.model.*); use the complete "
                           "x4-upscaler-ema.safetensors")
    try:
        unet = unet_class(**unet_config(unet_sd, path))
        dec_cfg = decoder_config(vae_sd, path)
        decoder = X4Decoder(decoder_class(**dec_cfg), int(vae_sd["post_quant_conv.weight"].shape[1]),
                            dec_cfg["z_channels"])
        text = OpenCLIPText(TextConfig.from_state_dict(text_sd))
    except (KeyError, StopIteration, ValueError) as exc:
        if isinstance(exc, ConcatError):
            raise
        raise _error(path, f"does not have the x4 upscaler's layout ({type(exc).__name__}: {exc})") from None
    _load(unet, unet_sd, "UNet", path)
    _load(decoder, {k: v for k, v in vae_sd.items() if k.startswith(("decoder.", "post_quant_conv."))}, "VAE", path)
    _load(text, {k: v for k, v in text_sd.items() if k != "logit_scale" and not k.startswith("visual.")},
          "text encoder", path)
    for module in (unet, decoder, text):
        module.eval().requires_grad_(False)
    return X4Models(unet=unet, decoder=decoder, text=text, path=path)


def load_models(path: str, **classes) -> X4Models:
    """Read ``path`` and build the models (see :func:`build_models`)."""
    return build_models(read_state_dict(path), path, **classes)
