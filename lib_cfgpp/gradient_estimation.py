"""Gradient estimation and its CFG++ twin. The WebUI lacks the base sampler; it is ours, written after ComfyUI's
``sample_gradient_estimation`` (the reference form). Notation and family rule: ``samplers``; d = (x − D)/σ.

Base solver: Permenter & Yuan, "Interpreting and Improving Diffusion Models from an Optimization
Perspective" (ICML 2024; openreview o2ND9v0CeK): read as gradient descent on the distance to the data
manifold, Euler's direction d is replaced by the extrapolation ``γ·d_i + (1 − γ)·d_{i−1}`` of the current and
the previous step's (γ = ``ge_gamma``, 2 as in ComfyUI). One model call per step:

- σ' = 0: ``x' = D``;
- else ``x' = x + (σ' − σ)·d_i``, plus from the second step ``(γ − 1)(σ' − σ)(d_i − d_{i−1})``.

γ = 1 is Euler. CFG++ (multistep family rule: the directions d are noise estimates, so D_∅; the x0 is D_λ):
``x' = D_λ,i + σ'·d_∅,i + (γ − 1)(σ' − σ)(d_∅,i − d_∅,i−1)`` (σ' = 0: D_λ,i), i.e. the base step on D_∅ plus g_i.
ComfyUI's ``gradient_estimation_cfg_pp`` is the same rule; upstream agrees.
"""
from __future__ import annotations

from typing import Optional

import torch

from .guidance import DEFAULT_MULTIPLIER, UncondBlend
from .predict import Predict, Progress, guided, plain, report, steps


def gradient_estimation_loop(predict: Predict, x, sigmas, callback, iterable, ge_gamma):
    old_d = None
    for i in iterable:
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised, uncond = predict(x, sigma)
        d = (x - uncond) / sigma
        report(callback, x, i, sigma, denoised)
        dt = sigma_next - sigma
        if sigma_next == 0:
            x = denoised
        else:
            x = x + d * dt
            if denoised is not uncond:
                x = x + (denoised - uncond)
            if old_d is not None:
                x = x + (ge_gamma - 1) * (d - old_d) * dt
        old_d = d
    return x


@torch.no_grad()
def sample_gradient_estimation(model, x, sigmas, extra_args=None, callback=None, disable=None, ge_gamma: float = 2.0,
                               *, progress: Optional[Progress] = None):
    """Gradient estimation; see the module docstring."""
    predict = plain(model, x, extra_args)
    return gradient_estimation_loop(predict, x, sigmas, callback, steps(len(sigmas) - 1, disable, progress), ge_gamma)


@torch.no_grad()
def sample_gradient_estimation_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None,
                                      ge_gamma: float = 2.0, *, multiplier: float = DEFAULT_MULTIPLIER,
                                      uncond_blend: Optional[UncondBlend] = None, progress: Optional[Progress] = None):
    """Gradient estimation CFG++; the update rule is in the module docstring."""
    predict = guided(model, x, extra_args, multiplier, uncond_blend)
    return gradient_estimation_loop(predict, x, sigmas, callback, steps(len(sigmas) - 1, disable, progress), ge_gamma)
