"""Which sampling step a CFG denoiser call belongs to: the schedule the WebUI's sampler actually walks.

k-diffusion samplers walk `get_sigmas(p, steps)` (img2img and the hires pass: only the tail from
`steps - t_enc - 1`), the DDIM family walks its timesteps (img2img: the first `t_enc`), flipped to decreasing
order. Gate by locating a call's sigma in this list, never by counting model calls (Heun/DPM2 call twice per
step, the host may split batches)."""
from __future__ import annotations

from typing import Optional

from modules import sd_samplers_common


def pass_schedule(sampler, p, img2img: bool, steps: Optional[int]) -> Optional[list]:
    """Decreasing sigmas (k-diffusion) or timesteps (DDIM family) of this pass, or None for an unknown sampler."""
    if img2img:
        steps, t_enc = sd_samplers_common.setup_img2img_steps(p, steps)
    else:
        steps, t_enc = steps or p.steps, None
    if hasattr(sampler, "get_sigmas"):
        sigmas = sampler.get_sigmas(p, steps)
        values = sigmas if t_enc is None else sigmas[steps - t_enc - 1:]
    elif hasattr(sampler, "get_timesteps"):
        timesteps = sampler.get_timesteps(p, steps)
        values = (timesteps if t_enc is None else timesteps[:t_enc]).flip(0)
    else:
        return None
    return [float(v) for v in values]


def corrects_at_next_sigma(sampler) -> Optional[bool]:
    """True for Heun, whose second (correction) call of a step is made at the next sigma of the schedule;
    None (unknown: let the locator learn it) otherwise."""
    func = getattr(sampler, "func", None)
    return True if "sample_heun" in (getattr(sampler, "funcname", None), getattr(func, "__name__", None)) else None
