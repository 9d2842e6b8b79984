"""The mode of a KL-VAE's posterior for an image batch, whatever wrapper the host puts around the VAE.

ldm's ``AutoencoderKL.encode`` returns the posterior (``.mode()`` is its mean); sgm's
``AutoencoderKLInferenceWrapper.encode`` (the WebUI's SDXL VAE) returns a *sample* of it, and diffusers'
``AutoencoderKL.encode`` an output with ``.latent_dist``. Edit models are conditioned on the mode (diffusers'
pipelines use ``sample_mode="argmax"``, the WebUI's SD 1.5 InstructPix2Pix ``encode_first_stage(x).mode()``), so
for the ldm / sgm layout (``encoder`` + ``quant_conv``) the mode is read off the moments directly:
``mean, logvar = quant_conv(encoder(x)).chunk(2, dim=1)``.
"""
from __future__ import annotations

import torch


def _dtype_of(module) -> torch.dtype:
    for param in module.parameters():
        return param.dtype
    return torch.float32


def posterior_mode(vae, x: torch.Tensor) -> torch.Tensor:
    """Unscaled latent mode [B, C, H/8, W/8] of ``x`` [B, 3, H, W] in [-1, 1], in the VAE's dtype and device."""
    encoder, quant_conv = getattr(vae, "encoder", None), getattr(vae, "quant_conv", None)
    if isinstance(vae, torch.nn.Module):
        first = next(vae.parameters(), None)
        if first is not None:
            x = x.to(device=first.device, dtype=_dtype_of(vae))
    if encoder is not None and quant_conv is not None:
        return quant_conv(encoder(x)).chunk(2, dim=1)[0]
    out = vae.encode(x)
    out = getattr(out, "latent_dist", out)
    if callable(getattr(out, "mode", None)):
        return out.mode()
    raise TypeError(f"{type(vae).__name__}.encode returned {type(out).__name__}; expected a posterior with .mode() "
                    "(or a VAE with encoder and quant_conv)")
