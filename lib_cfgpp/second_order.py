"""Heun CFG++ and DPM2 CFG++: the deterministic second-order k-diffusion samplers, two model calls per step
whose next sigma is > 0 (``second_order``). Notation and family rule: ``samplers``; d = (x − D)/σ.

No upstream form exists (the official repo, ComfyUI and reForge ship neither); both follow the family rule
for single-step methods: the inner stage is the base's Euler stage on D_∅ alone, the step is the base step
on D_∅ plus the guidance vectors weighted as the base weights its stages. Sigma churn (``s_churn``) is not
offered, as for Euler CFG++: the WebUI passes it only to functions that take it.
"""
from __future__ import annotations

from typing import Optional

import torch

from .guidance import DEFAULT_MULTIPLIER, UncondBlend
from .predict import Predict, Progress, guided, report, steps


def heun_loop(predict: Predict, x, sigmas, callback, iterable):
    for i in iterable:
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised, uncond = predict(x, sigma)
        report(callback, x, i, sigma, denoised)
        d = (x - uncond) / sigma
        dt = sigma_next - sigma
        if sigma_next == 0:
            x = x + d * dt if denoised is uncond else denoised
            continue
        x_2 = x + d * dt
        denoised_2, uncond_2 = predict(x_2, sigma_next)
        d_2 = (x_2 - uncond_2) / sigma_next
        x = x + (d + d_2) / 2 * dt
        if denoised is not uncond:
            x = x + ((denoised - uncond) + (denoised_2 - uncond_2)) / 2
    return x


def dpm_2_loop(predict: Predict, x, sigmas, callback, iterable):
    for i in iterable:
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised, uncond = predict(x, sigma)
        report(callback, x, i, sigma, denoised)
        d = (x - uncond) / sigma
        if sigma_next == 0:
            x = x + d * (sigma_next - sigma) if denoised is uncond else denoised
            continue
        sigma_mid = sigma.log().lerp(sigma_next.log(), 0.5).exp()
        x_2 = x + d * (sigma_mid - sigma)
        denoised_2, uncond_2 = predict(x_2, sigma_mid)
        x = x + (x_2 - uncond_2) / sigma_mid * (sigma_next - sigma)
        if denoised is not uncond:
            x = x + (denoised_2 - uncond_2)
    return x


@torch.no_grad()
def sample_heun_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None, *,
                       multiplier: float = DEFAULT_MULTIPLIER, uncond_blend: Optional[UncondBlend] = None,
                       progress: Optional[Progress] = None):
    """Heun CFG++. Base: Heun's second-order method of Karras et al. 2022, "Elucidating the Design Space of
    Diffusion-Based Generative Models" (arXiv 2206.00364), Alg. 1; k-diffusion ``sample_heun`` without churn.

    - σ' = 0: ``x' = D_λ(x, σ)`` (the Euler CFG++ step to 0);
    - else, with the Euler stage on D_∅ ``x̄ = x + (σ' − σ)·d_∅(x, σ)`` and a second call at (x̄, σ'):
      ``x' = x + (σ' − σ)·(d_∅(x, σ) + d_∅(x̄, σ'))/2 + (g(x, σ) + g(x̄, σ'))/2``.

    The trapezoid weights both slopes ½, so each guidance vector gets ½ (total 1, as Euler CFG++).
    """
    predict = guided(model, x, extra_args, multiplier, uncond_blend)
    return heun_loop(predict, x, sigmas, callback, steps(len(sigmas) - 1, disable, progress))


@torch.no_grad()
def sample_dpm_2_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None, *,
                        multiplier: float = DEFAULT_MULTIPLIER, uncond_blend: Optional[UncondBlend] = None,
                        progress: Optional[Progress] = None):
    """DPM2 CFG++. Base: k-diffusion ``sample_dpm_2``, DPM-Solver-2 (Lu et al. 2022, "DPM-Solver", arXiv
    2206.00927) in the σ form of Karras et al. 2022 Alg. 2, midpoint σ_m = √(σσ') (log-midpoint).

    - σ' = 0: ``x' = D_λ(x, σ)``;
    - else, with the half stage on D_∅ ``x̄ = x + (σ_m − σ)·d_∅(x, σ)`` and a second call at (x̄, σ_m):
      ``x' = x + (σ' − σ)·d_∅(x̄, σ_m) + g(x̄, σ_m)``.

    The final update uses only the midpoint slope, so the midpoint's guidance vector gets weight 1, as in the
    official DPM++ 2S a CFG++ (its exponential-integrator twin).
    """
    predict = guided(model, x, extra_args, multiplier, uncond_blend)
    return dpm_2_loop(predict, x, sigmas, callback, steps(len(sigmas) - 1, disable, progress))
