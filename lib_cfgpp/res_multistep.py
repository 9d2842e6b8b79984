"""RES multistep, its ancestral form, and their CFG++ twins. The WebUI lacks the base samplers; they are ours,
written after ComfyUI's ``sample_res_multistep`` / ``sample_res_multistep_ancestral`` (the reference forms).
Notation and family rule: ``samplers``; t = −log σ, d = (x − D)/σ.

Base solver: the second-order multistep exponential integrator in data prediction of Zhang, Song, Chen
2023, "Improved Order Analysis and Design of Exponential Integrator for Diffusion Models Sampling" (RES,
arXiv 2308.02157). One model call per step. Step i goes from σ to σ_d, (σ_d, σ_u) = ancestral(σ, σ', η)
(η = 0 for RES multistep: σ_d = σ', no noise), then adds s_noise·σ_u·noise(σ, σ') when σ' > 0 and η ≠ 0:

- first step, σ_d = 0, or a degenerate previous step (see below): Euler, ``x' = D + σ_d·d``;
- else, h = t(σ_d) − t(σ), c₂ = (t(σ_{i−1}) − t(σ_d,i−1))/h, φ₁ = (1 − e^{−h})/h, φ₂ = (1 − φ₁)/h,
  b₁ = φ₁ − φ₂/c₂, b₂ = φ₂/c₂ (NaN → 0, as ComfyUI):  ``x' = e^{−h}x + h(b₁D_i + b₂D_{i−1})``.

As ComfyUI, c₂ measures the previous step by its *deterministic* part (from σ_{i−1} to where it landed
before its noise, σ_d,i−1), not by t(σ_i) − t(σ_{i−1}); identical at η = 0. Where ComfyUI would divide by
c₂ = 0 (the previous step went nowhere: repeated sigmas) we take the Euler step. ComfyUI also draws (and
multiplies by 0) a noise in every step of the η = 0 sampler; ours draws none.

CFG++ (multistep family rule; ComfyUI's ``res_multistep_cfg_pp`` has the same Euler step):
``x' = D_λ,i + e^{−h}(x − D_∅,i) + h·b₂·(D_∅,i−1 − D_λ,i)``, i.e. the base step on D_∅ plus (1 − h·b₂)·g_i,
history D_∅. ComfyUI's multistep step instead adds e^{−h}·g_i (it shifts x by g and then uses D_∅ for the
current prediction too), so its guidance weight drops from 1 in the Euler first step to e^{−h} in the next
(½ for a step that halves σ); ours keeps x0 from D_λ in every step (weight 1 − h·b₂ ≥ 1, as the
official DPM++ 2M CFG++'s 1 + (1 − e^{−h})/(2r)).
"""
from __future__ import annotations

from typing import Optional

import torch

from .guidance import DEFAULT_MULTIPLIER, UncondBlend
from .noise import RandnLike, ancestral_step, default_noise_sampler
from .predict import Predict, Progress, guided, plain, report, steps


def _t(sigma):
    return sigma.log().neg()


def res_multistep_loop(predict: Predict, x, sigmas, callback, iterable, eta, s_noise, noise_sampler):
    old_uncond, old_sigma_down = None, None
    for i in iterable:
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised, uncond = predict(x, sigma)
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        report(callback, x, i, sigma, denoised)
        is_guided = denoised is not uncond
        if sigma_down == 0 and is_guided:
            x = denoised
        elif sigma_down == 0 or old_uncond is None or old_sigma_down == sigmas[i - 1]:
            x = x + (x - uncond) / sigma * (sigma_down - sigma)
            if is_guided:
                x = x + (denoised - uncond)
        else:
            t, t_next = _t(sigma), _t(sigma_down)
            h = t_next - t
            c2 = (_t(sigmas[i - 1]) - _t(old_sigma_down)) / h
            phi1 = (-h).expm1() / (-h)
            phi2 = (phi1 - 1) / (-h)
            b1 = torch.nan_to_num(phi1 - phi2 / c2, nan=0.0)
            b2 = torch.nan_to_num(phi2 / c2, nan=0.0)
            x = (-h).exp() * x + h * (b1 * uncond + b2 * old_uncond)
            if is_guided:
                x = x + (1 - h * b2) * (denoised - uncond)
        if eta and sigma_next > 0:
            x = x + noise_sampler(sigma, sigma_next) * s_noise * sigma_up
        old_uncond, old_sigma_down = uncond, sigma_down
    return x


@torch.no_grad()
def sample_res_multistep(model, x, sigmas, extra_args=None, callback=None, disable=None, *,
                         progress: Optional[Progress] = None):
    """RES multistep (deterministic, η = 0); see the module docstring."""
    predict = plain(model, x, extra_args)
    return res_multistep_loop(predict, x, sigmas, callback, steps(len(sigmas) - 1, disable, progress), 0.0, 1.0,
                              None)


@torch.no_grad()
def sample_res_multistep_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None,
                                   eta: float = 1.0, s_noise: float = 1.0, noise_sampler=None, *,
                                   randn_like: Optional[RandnLike] = None, progress: Optional[Progress] = None):
    """RES multistep ancestral: the k-diffusion ancestral split at ``eta``, noise drawn once per step with
    σ' > 0 (as Euler a); η = 0 is RES multistep."""
    noise_sampler = default_noise_sampler(x, randn_like) if noise_sampler is None else noise_sampler
    predict = plain(model, x, extra_args)
    return res_multistep_loop(predict, x, sigmas, callback, steps(len(sigmas) - 1, disable, progress), eta,
                              s_noise, noise_sampler)


@torch.no_grad()
def sample_res_multistep_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None, *,
                                multiplier: float = DEFAULT_MULTIPLIER, uncond_blend: Optional[UncondBlend] = None,
                                progress: Optional[Progress] = None):
    """RES multistep CFG++ (η = 0); the update rule and upstream's form are in the module docstring."""
    predict = guided(model, x, extra_args, multiplier, uncond_blend)
    return res_multistep_loop(predict, x, sigmas, callback, steps(len(sigmas) - 1, disable, progress), 0.0, 1.0,
                              None)


@torch.no_grad()
def sample_res_multistep_ancestral_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None,
                                          eta: float = 1.0, s_noise: float = 1.0, noise_sampler=None, *,
                                          multiplier: float = DEFAULT_MULTIPLIER,
                                          randn_like: Optional[RandnLike] = None,
                                          uncond_blend: Optional[UncondBlend] = None,
                                          progress: Optional[Progress] = None):
    """RES multistep ancestral CFG++: the CFG++ rule of the module docstring on the ancestral split (σ_d), then
    the same noise as the base (first step: the Euler a CFG++ step)."""
    noise_sampler = default_noise_sampler(x, randn_like) if noise_sampler is None else noise_sampler
    predict = guided(model, x, extra_args, multiplier, uncond_blend)
    return res_multistep_loop(predict, x, sigmas, callback, steps(len(sigmas) - 1, disable, progress), eta,
                              s_noise, noise_sampler)
