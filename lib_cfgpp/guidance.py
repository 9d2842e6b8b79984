"""Guidance-scale conventions and the per-call read of the unconditional prediction.

CFG++ (Chung et al., arXiv 2406.08070) guides with a small scale λ (the paper uses λ in [0, 1]).
The host's CFG denoiser computes ``D_λ = D_∅ + cond_scale · cond_scale_miltiplier · (D_c − D_∅)``,
so λ = CFG value × multiplier. Two conventions exist upstream:

- ``CFG/12.5`` (default): λ = CFG / 12.5, the WebUI's own "DDIM CFG++" (it sets the multiplier to
  1/12.5), so both CFG++ families of the WebUI agree on what a CFG value means.
- ``CFG=lambda``: the CFG value *is* λ (multiplier 1.0), the ComfyUI / Forge convention.

Edit models (InstructPix2Pix, SDXL edit, CosXL Edit: the 3-way batch with an image scale): D_λ is the host's edit
guidance with the text scale times the multiplier and D_∅ the fully unconditional row; the rule, its manifold
argument and reductions are in ``lib_concat/edit_guidance.py`` (nothing here changes for them).

Host contract read here (WebUI v1.10 ``CFGDenoiser``; names only, no import):
``need_last_noise_uncond``, ``last_noise_uncond`` (uncond rows of the model output, i.e. the
unconditional *denoised* x0 on the k-diffusion path), ``cond_scale_miltiplier`` (sic), and for the
inpainting blend ``mask``, ``nmask``, ``init_latent``, ``mask_before_denoising``.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

DDIM_CONVENTION = "CFG/12.5"
LAMBDA_CONVENTION = "CFG=lambda"
DEFAULT_CONVENTION = DDIM_CONVENTION

_MULTIPLIERS = {DDIM_CONVENTION: 1.0 / 12.5, LAMBDA_CONVENTION: 1.0}
_ALIASES = {
    "cfg/12.5": DDIM_CONVENTION, "ddim": DDIM_CONVENTION, "webui": DDIM_CONVENTION,
    "cfg=lambda": LAMBDA_CONVENTION, "cfg=λ": LAMBDA_CONVENTION, "lambda": LAMBDA_CONVENTION,
    "λ": LAMBDA_CONVENTION, "comfyui": LAMBDA_CONVENTION, "forge": LAMBDA_CONVENTION,
}
CONVENTIONS = tuple(_MULTIPLIERS)

DEFAULT_MULTIPLIER = _MULTIPLIERS[DEFAULT_CONVENTION]

UncondBlend = Callable[[object, torch.Tensor, torch.Tensor], torch.Tensor]


def normalize_convention(convention: Optional[str]) -> str:
    """Canonical convention name (``CFG/12.5`` or ``CFG=lambda``); None gives the default.
    Raises ValueError naming the accepted values for anything else."""
    if convention is None:
        return DEFAULT_CONVENTION
    key = str(convention).strip()
    if key in _MULTIPLIERS:
        return key
    try:
        return _ALIASES[key.lower()]
    except KeyError:
        raise ValueError(f"unknown CFG++ guidance convention {convention!r}; "
                         f"use one of {', '.join(CONVENTIONS)}") from None


def multiplier_for(convention: Optional[str]) -> float:
    """The ``cond_scale_miltiplier`` a convention sets on the CFG denoiser."""
    return _MULTIPLIERS[normalize_convention(convention)]


def guidance_lambda(cfg_scale: float, convention: Optional[str] = None) -> float:
    """λ actually applied for a CFG value under ``convention`` (write this to infotext)."""
    return float(cfg_scale) * multiplier_for(convention)


def cfg_scale_for_lambda(lam: float, convention: Optional[str] = None) -> float:
    """The CFG value that gives λ under ``convention`` (inverse of ``guidance_lambda``)."""
    return float(lam) / multiplier_for(convention)


def arm(model, multiplier: float) -> None:
    """Ask the per-pass CFG denoiser for its uncond rows and scale its guidance by ``multiplier``.
    Nothing is restored: the host makes a new denoiser for every sampling pass."""
    model.cond_scale_miltiplier = float(multiplier)
    model.need_last_noise_uncond = True


def host_mask_blend(model, denoised_uncond: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blend D_∅ exactly as the host blends the guided D_λ after denoising (inpainting):
    ``D·nmask + init_latent·mask``; unchanged when there is no mask or the host blends the
    latent *before* denoising (then neither prediction is blended)."""
    mask = getattr(model, "mask", None)
    if mask is None or getattr(model, "mask_before_denoising", False):
        return denoised_uncond
    return denoised_uncond * model.nmask + model.init_latent * mask


def denoise(model, x: torch.Tensor, sigma: torch.Tensor, extra_args: dict,
            uncond_blend: Optional[UncondBlend] = None):
    """One model call: returns ``(D_λ, D_∅)``, both shaped like ``x``.

    D_λ is what the CFG denoiser returns (guided, already mask-blended by the host); D_∅ is its
    ``last_noise_uncond`` passed through ``uncond_blend`` (default ``host_mask_blend``). When the host
    skipped the uncond pass (NGMS / skip early CFG) it stores the cond output there and returns it as
    D_λ, so D_λ == D_∅ and the step degenerates to the base sampler on D_c.
    ``last_noise_uncond`` is consumed (set to None) so a denoiser that stops providing it is caught.
    """
    guided = model(x, sigma, **extra_args)
    uncond = getattr(model, "last_noise_uncond", None)
    if uncond is None:
        raise RuntimeError(
            "CFG++ sampler: the CFG denoiser did not provide the unconditional prediction "
            "(need_last_noise_uncond / last_noise_uncond); this host or another extension "
            "replaced the WebUI's CFG denoiser. Use the base sampler instead.")
    model.last_noise_uncond = None
    if uncond.shape != guided.shape:
        raise RuntimeError(f"CFG++ sampler: unconditional prediction has shape {tuple(uncond.shape)}, "
                           f"the guided one {tuple(guided.shape)}; the denoiser batching is not supported.")
    uncond = uncond.to(guided.dtype)
    blend = host_mask_blend if uncond_blend is None else uncond_blend
    return guided, blend(model, uncond, sigma)
