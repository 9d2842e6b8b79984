"""CFG++ samplers (Chung et al., "CFG++: Manifold-constrained Classifier Free Guidance for Diffusion
Models", arXiv 2406.08070; official code CFGpp-diffusion/CFGpp) with the k-diffusion signature.

Notation (k-diffusion sigma parameterisation, x = x_VP/√ᾱ, σ = √((1−ᾱ)/ᾱ)):
``D_∅ = D(x, σ; ∅)`` unconditional denoised x0, ``D_c`` conditional, ``D_λ = D_∅ + λ(D_c − D_∅)`` the
guided denoised x0 the CFG denoiser returns (λ = CFG value × ``multiplier``, see ``guidance``).
CFG++ takes x0 from D_λ but re-noises along the *unconditional* direction ``(x − D_∅)/σ``.

Every sampler: ``model(x, sigma_batch, **extra_args)`` is the host's CFG denoiser; each model call is
followed by a read of its ``last_noise_uncond`` (D_∅). The samplers set ``model.need_last_noise_uncond``
and ``model.cond_scale_miltiplier`` and restore nothing (the denoiser is made per pass). Callbacks get
the k-diffusion dict ``{'x', 'i', 'sigma', 'sigma_hat', 'denoised'}`` with ``denoised = D_λ``, once per
step, before the update. When the host skipped the uncond pass, D_λ == D_∅ == D_c and every rule below
reduces to its base k-diffusion sampler on D_c. With D_c == D_∅ (or λ = 0) each equals its base sampler.

Keyword-only extras (not passed by the WebUI; bound by ``factory.make_sampler``): ``multiplier``,
``randn_like`` (ancestral only), ``brownian_noise`` (SDE only), ``uncond_blend``, ``progress``
(``(n, disable) -> iterable`` for a bar).

Family rule (this module and ``second_order``, ``sde``, ``res_multistep``, ``gradient_estimation``), with
σ = σ_i, σ' = σ_{i+1} and ``g = D_λ − D_∅`` the guidance vector of one evaluation:

- a first-order step is ``x' = D_λ + (σ'/σ)(x − D_∅)``, i.e. the base step on D_∅ plus g (DDIM CFG++);
- single-step methods with inner stages (DPM++ 2S a, DPM++ SDE, Heun, DPM2): every inner stage point is the
  base's own stage computed from D_∅ alone; the step is the base step on D_∅ plus ``Σ_k w_k g_k``, where
  w_k (Σ w_k = 1) are the weights the base's final update gives its stages: the step's x0 estimate is
  guided, its noise estimate unconditional. This is the official DPM++ 2S a CFG++ (w = (0, 1));
- multistep methods (DPM++ 2M, 2M SDE, 3M SDE, RES multistep, gradient estimation): the history holds the
  D_∅ of earlier steps; the current prediction enters as D_λ where the base uses it as an x0 (the leading
  term and its finite differences) and as D_∅ where it estimates the noise, ``(x − D)/σ``. This is the
  official DPM++ 2M CFG++ after its fix (history D_∅, current D_λ in the difference).

Every rule is the base sampler when D_λ == D_∅; each sampler's docstring gives its update in this notation.
"""
from __future__ import annotations

from typing import Optional

import torch

from .guidance import DEFAULT_MULTIPLIER, UncondBlend, arm, denoise
from .noise import RandnLike, ancestral_step, default_noise_sampler
from .predict import Progress
from .predict import report as _callback
from .predict import steps as _steps


@torch.no_grad()
def sample_euler_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None, *,
                        multiplier: float = DEFAULT_MULTIPLIER, uncond_blend: Optional[UncondBlend] = None,
                        progress: Optional[Progress] = None):
    """Euler CFG++ (paper Alg. 2, DDIM CFG++, written in sigma form; official ``EulerCFGppSolver``).

    ``x_{i+1} = D_λ(x_i, σ_i) + σ_{i+1} · (x_i − D_∅(x_i, σ_i)) / σ_i``

    On the DDIM timestep schedule (σ_t = √((1−ᾱ_t)/ᾱ_t), x = x_VP/√ᾱ) this is exactly the WebUI's
    ``ddim_cfgpp`` with eta 0. One step equals a plain-CFG Euler step with ω = λσ_i/(σ_i − σ_{i+1}).
    """
    extra_args = {} if extra_args is None else extra_args
    arm(model, multiplier)
    s_in = x.new_ones([x.shape[0]])
    for i in _steps(len(sigmas) - 1, disable, progress):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        guided, uncond = denoise(model, x, sigma * s_in, extra_args, uncond_blend)
        _callback(callback, x, i, sigma, guided)
        x = guided + (x - uncond) / sigma * sigma_next
    return x


@torch.no_grad()
def sample_euler_ancestral_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None,
                                  eta: float = 1.0, s_noise: float = 1.0, noise_sampler=None, *,
                                  multiplier: float = DEFAULT_MULTIPLIER, randn_like: Optional[RandnLike] = None,
                                  uncond_blend: Optional[UncondBlend] = None, progress: Optional[Progress] = None):
    """Euler a CFG++ (official ``EulerAncestralCFGppSolver``; ComfyUI and reForge agree).

    ``(σ_d, σ_u) = ancestral(σ_i, σ_{i+1}, η)`` (k-diffusion ``get_ancestral_step``);
    ``x_{i+1} = D_λ + σ_d · (x_i − D_∅) / σ_i + s_noise · σ_u · z``, z = ``noise_sampler(σ_i, σ_{i+1})``
    drawn only when σ_{i+1} > 0 (same draws, same order as k-diffusion ``sample_euler_ancestral``).
    """
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = default_noise_sampler(x, randn_like) if noise_sampler is None else noise_sampler
    arm(model, multiplier)
    s_in = x.new_ones([x.shape[0]])
    for i in _steps(len(sigmas) - 1, disable, progress):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        guided, uncond = denoise(model, x, sigma * s_in, extra_args, uncond_blend)
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta=eta)
        _callback(callback, x, i, sigma, guided)
        x = guided + (x - uncond) / sigma * sigma_down
        if sigma_next > 0:
            x = x + noise_sampler(sigma, sigma_next) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpmpp_2m_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None, *,
                           multiplier: float = DEFAULT_MULTIPLIER, uncond_blend: Optional[UncondBlend] = None,
                           progress: Optional[Progress] = None):
    """DPM++ 2M CFG++ (DPM-Solver++(2M) multistep in data prediction, t = −log σ, h = t_{i+1} − t_i,
    r = h_{i−1}/h, e^{−h} = σ_{i+1}/σ_i):

    - first step, or σ_{i+1} = 0: the Euler CFG++ step ``D_λ,i + e^{−h}(x_i − D_∅,i)``;
    - otherwise ``x_{i+1} = D_λ,i + e^{−h}(x_i − D_∅,i) + (1 − e^{−h})/(2r) · (D_λ,i − D_∅,i−1)``.

    Upstream disagrees on the history term. We follow the official repo's ``latent_diffusion.py``
    (``DPMpp2mCFGppSolver`` after commit 0b03bc4 "dpm++_2m_cfg++ bug fix", 2024-08-13, by the paper's
    first author, which changed it from ``(D_∅,i − D_∅,i−1)`` to ``(D_λ,i − D_∅,i−1)``); ComfyUI's
    ``sample_dpmpp_2m_cfg_pp`` uses the same form. The official ``latent_sdxl.py`` (added 2024-08-08
    and never updated) still has the pre-fix ``(D_∅,i − D_∅,i−1)``. Both reduce to k-diffusion
    ``sample_dpmpp_2m`` when D_λ == D_∅.
    """
    extra_args = {} if extra_args is None else extra_args
    arm(model, multiplier)
    s_in = x.new_ones([x.shape[0]])
    old_uncond = None
    h_last = None
    for i in _steps(len(sigmas) - 1, disable, progress):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        guided, uncond = denoise(model, x, sigma * s_in, extra_args, uncond_blend)
        _callback(callback, x, i, sigma, guided)
        if old_uncond is None or sigma_next == 0:
            x = guided + (x - uncond) / sigma * sigma_next
            h = None if sigma_next == 0 else sigma.log() - sigma_next.log()
        else:
            h = sigma.log() - sigma_next.log()
            r = h_last / h
            x = guided + (sigma_next / sigma) * (x - uncond) - (-h).expm1() / (2 * r) * (guided - old_uncond)
        old_uncond = uncond
        h_last = h
    return x


@torch.no_grad()
def sample_dpmpp_2s_ancestral_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None,
                                     eta: float = 1.0, s_noise: float = 1.0, noise_sampler=None, *,
                                     multiplier: float = DEFAULT_MULTIPLIER, randn_like: Optional[RandnLike] = None,
                                     uncond_blend: Optional[UncondBlend] = None, progress: Optional[Progress] = None):
    """DPM++ 2S a CFG++ (official repo ``latent_diffusion.py`` ``DPMpp2sAncestralCFGppSolver``).

    ``(σ_d, σ_u) = ancestral(σ_i, σ_{i+1}, η)``. If σ_d = 0: ``x = D_λ,i``. Otherwise with
    σ_s = √(σ_i σ_d) (the log-midpoint, r = 1/2):

    - ``u = (σ_s/σ_i) x_i + (1 − σ_s/σ_i) D_∅,i``  (half step driven by D_∅ only),
    - ``x_{i+1} = D_λ(u, σ_s) + (σ_d/σ_i) · (x_i − D_∅(u, σ_s))``,

    then ``+ s_noise · σ_u · z`` when σ_{i+1} > 0 (same noise draws as k-diffusion
    ``sample_dpmpp_2s_ancestral``). Two model calls per step (``second_order``).

    Three forms exist upstream; we follow the official one. ComfyUI instead runs the whole 2S step on
    D_∅ (the midpoint's guided output is discarded) and adds the first evaluation's (D_λ,i − D_∅,i)
    after the noise; reForge shifts x by (D_λ,i − D_∅,i) and then runs plain DPM++ 2S on D_λ.
    All three reduce to k-diffusion ``sample_dpmpp_2s_ancestral`` when D_λ == D_∅.
    """
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = default_noise_sampler(x, randn_like) if noise_sampler is None else noise_sampler
    arm(model, multiplier)
    s_in = x.new_ones([x.shape[0]])
    for i in _steps(len(sigmas) - 1, disable, progress):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        guided, uncond = denoise(model, x, sigma * s_in, extra_args, uncond_blend)
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta=eta)
        _callback(callback, x, i, sigma, guided)
        if sigma_down == 0:
            x = guided
        else:
            t, t_down = sigma.log().neg(), sigma_down.log().neg()
            h = t_down - t
            sigma_s = (t + h / 2).neg().exp()
            u = (sigma_s / sigma) * x - (-h / 2).expm1() * uncond
            guided_2, uncond_2 = denoise(model, u, sigma_s * s_in, extra_args, uncond_blend)
            x = guided_2 + (sigma_down / sigma) * (x - uncond_2)
        if sigma_next > 0:
            x = x + noise_sampler(sigma, sigma_next) * s_noise * sigma_up
    return x
