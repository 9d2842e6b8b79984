"""DPM++ SDE CFG++, DPM++ 2M SDE CFG++, DPM++ 3M SDE CFG++: the WebUI's stochastic DPM-Solver++ samplers.
Notation and family rule: ``samplers``; t = −log σ, h = t' − t, g = D_λ − D_∅.

Noise: exactly the base's. ``noise_sampler(σ_a, σ_b)`` is called with the same arguments, in the same order,
under the same conditions as k-diffusion's ``sample_dpmpp_sde`` / ``_2m_sde`` / ``_3m_sde`` (ab527a9, the
WebUI's pin); the WebUI passes the Brownian tree it builds from the image seeds (options ``brownian_noise``,
copied from the base sampler), so seeds reproduce per image as for the base. Without one, a Brownian tree
over the schedule's positive sigmas is built as the base builds it: ``brownian_noise(x, σ_min, σ_max)``
(the adapter binds the host's class; default ``brownian.BrownianTreeNoise``). ``eta`` and ``s_noise`` act
as in the base (η = 0: the ODE samplers DPM++ 2S / 2M / 3M; the WebUI passes its eta and s_noise settings).

Upstream disagrees on the SDE twins; what we follow is said per sampler.
"""
from __future__ import annotations

from typing import Optional

import torch

from .brownian import BrownianFactory, brownian_or_given
from .guidance import DEFAULT_MULTIPLIER, UncondBlend
from .noise import ancestral_step
from .predict import Predict, Progress, guided, report, steps


def _t(sigma):
    return sigma.log().neg()


def _sigma(t):
    return t.neg().exp()


def dpmpp_sde_loop(predict: Predict, x, sigmas, callback, iterable, eta, s_noise, noise_sampler, r):
    for i in iterable:
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised, uncond = predict(x, sigma)
        report(callback, x, i, sigma, denoised)
        if sigma_next == 0:
            x = x + (x - uncond) / sigma * (sigma_next - sigma) if denoised is uncond else denoised
            continue
        t, t_next = _t(sigma), _t(sigma_next)
        h = t_next - t
        s = t + h * r
        fac = 1 / (2 * r)
        sd, su = ancestral_step(_sigma(t), _sigma(s), eta)
        s_ = _t(sd)
        x_2 = (_sigma(s_) / _sigma(t)) * x - (t - s_).expm1() * uncond
        x_2 = x_2 + noise_sampler(_sigma(t), _sigma(s)) * s_noise * su
        denoised_2, uncond_2 = predict(x_2, _sigma(s))
        sd, su = ancestral_step(_sigma(t), _sigma(t_next), eta)
        t_next_ = _t(sd)
        uncond_d = (1 - fac) * uncond + fac * uncond_2
        x = (_sigma(t_next_) / _sigma(t)) * x - (t - t_next_).expm1() * uncond_d
        if denoised is not uncond:
            x = x + (1 - fac) * (denoised - uncond) + fac * (denoised_2 - uncond_2)
        x = x + noise_sampler(_sigma(t), _sigma(t_next)) * s_noise * su
    return x


def dpmpp_2m_sde_loop(predict: Predict, x, sigmas, callback, iterable, eta, s_noise, noise_sampler, solver_type):
    if solver_type not in {'heun', 'midpoint'}:
        raise ValueError("solver_type must be 'heun' or 'midpoint'")
    old_uncond, h, h_last = None, None, None
    for i in iterable:
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised, uncond = predict(x, sigma)
        report(callback, x, i, sigma, denoised)
        if sigma_next == 0:
            x = denoised
        else:
            h = _t(sigma_next) - _t(sigma)
            eta_h = eta * h
            decay = (-h - eta_h).expm1().neg()
            x = sigma_next / sigma * (-eta_h).exp() * x + decay * uncond
            if denoised is not uncond:
                x = x + (denoised - uncond)
            if old_uncond is not None:
                r = h_last / h
                if solver_type == 'heun':
                    x = x + (decay / (-h - eta_h) + 1) * (1 / r) * (denoised - old_uncond)
                else:
                    x = x + 0.5 * decay * (1 / r) * (denoised - old_uncond)
            if eta:
                x = x + noise_sampler(sigma, sigma_next) * sigma_next * (-2 * eta_h).expm1().neg().sqrt() * s_noise
        old_uncond, h_last = uncond, h
    return x


def dpmpp_3m_sde_loop(predict: Predict, x, sigmas, callback, iterable, eta, s_noise, noise_sampler):
    uncond_1, uncond_2 = None, None
    h, h_1, h_2 = None, None, None
    for i in iterable:
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised, uncond = predict(x, sigma)
        report(callback, x, i, sigma, denoised)
        if sigma_next == 0:
            x = denoised
        else:
            h = _t(sigma_next) - _t(sigma)
            h_eta = h * (eta + 1)
            x = torch.exp(-h_eta) * x + (-h_eta).expm1().neg() * uncond
            if denoised is not uncond:
                x = x + (denoised - uncond)
            if h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - uncond_1) / r0
                d1_1 = (uncond_1 - uncond_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                x = x + phi_2 * d1 - phi_3 * d2
            elif h_1 is not None:
                d = (denoised - uncond_1) / (h_1 / h)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                x = x + phi_2 * d
            if eta:
                x = x + noise_sampler(sigma, sigma_next) * sigma_next * (-2 * h * eta).expm1().neg().sqrt() * s_noise
        uncond_1, uncond_2 = uncond, uncond_1
        h_1, h_2 = h, h_1
    return x


@torch.no_grad()
def sample_dpmpp_sde_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None, eta: float = 1.0,
                            s_noise: float = 1.0, noise_sampler=None, r: float = 1 / 2, *,
                            multiplier: float = DEFAULT_MULTIPLIER, brownian_noise: Optional[BrownianFactory] = None,
                            uncond_blend: Optional[UncondBlend] = None, progress: Optional[Progress] = None):
    """DPM++ SDE CFG++. Base: k-diffusion ``sample_dpmpp_sde`` ("DPM-Solver++ (stochastic)": a single-step
    2nd-order DPM-Solver++, Lu et al. 2022, arXiv 2211.01095, with ancestral noise in both stages); two model
    calls per step whose next sigma is > 0. With s = t + r·h, fac = 1/(2r), ``ancestral(σ_a, σ_b, η)`` the
    k-diffusion (σ_down, σ_up) and z_1 = noise(σ, σ_s), z_2 = noise(σ, σ'):

    - σ' = 0: ``x' = D_λ(x, σ)``;
    - stage on D_∅: (σ_d1, σ_u1) = ancestral(σ, σ_s); ``x̄ = (σ_d1/σ)x + (1 − σ_d1/σ)D_∅ + s_noise·σ_u1·z_1``;
      second call at (x̄, σ_s);
    - (σ_d, σ_u) = ancestral(σ, σ'); with X_∅ = (1 − fac)D_∅(x) + fac·D_∅(x̄) and X_λ the same on D_λ:
      ``x' = X_λ + (σ_d/σ)(x − X_∅) + s_noise·σ_u·z_2``.

    At r = ½ (the WebUI's) X = D(x̄): the official DPM++ 2S a CFG++ with Brownian noise in both stages.
    reForge's "DPM++ SDE CFG++" differs: its stage uses D_λ, and its final step lands on D_λ(x̄) with the
    noise direction of the *first* call, ``D_λ(x̄) + σ_d(x − D_∅(x))/σ``, which is not DPM++ SDE when
    D_λ == D_∅ (no twin); we follow the family rule so that it is.
    """
    noise_sampler = brownian_or_given(x, sigmas, noise_sampler, brownian_noise)
    predict = guided(model, x, extra_args, multiplier, uncond_blend)
    return dpmpp_sde_loop(predict, x, sigmas, callback, steps(len(sigmas) - 1, disable, progress), eta, s_noise,
                          noise_sampler, r)


@torch.no_grad()
def sample_dpmpp_2m_sde_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None, eta: float = 1.0,
                               s_noise: float = 1.0, noise_sampler=None, solver_type: str = 'midpoint', *,
                               multiplier: float = DEFAULT_MULTIPLIER,
                               brownian_noise: Optional[BrownianFactory] = None,
                               uncond_blend: Optional[UncondBlend] = None, progress: Optional[Progress] = None):
    """DPM++ 2M SDE CFG++. Base: k-diffusion ``sample_dpmpp_2m_sde``, SDE-DPM-Solver++(2M) (Lu et al. 2022,
    arXiv 2211.01095). With ρ = e^{−(1+η)h} (= (σ'/σ)e^{−ηh}), r = h_{i−1}/h, z = noise(σ, σ'):

    - σ' = 0: ``x' = D_λ,i``;
    - else ``x' = D_λ,i + ρ(x − D_∅,i) + c·(D_λ,i − D_∅,i−1) + s_noise·σ'·√(1 − e^{−2ηh})·z``,
      c = (1 − ρ)/(2r) (midpoint, the WebUI's) or (1 − (1 − ρ)/((1+η)h))/r (``solver_type='heun'``);
      no history term in the first step, no noise at η = 0.

    Upstream: a ComfyUI custom-node form (x shifted by g, then the base step on D_λ with D_λ history) uses
    (D_λ,i − D_λ,i−1) in the history term. We use (D_λ,i − D_∅,i−1) as the official DPM++ 2M CFG++ does
    (and our ``sample_dpmpp_2m_cfg_pp``), so that at η = 0 this *is* DPM++ 2M CFG++, as the base DPM++ 2M
    SDE at η = 0 is DPM++ 2M.
    """
    noise_sampler = brownian_or_given(x, sigmas, noise_sampler, brownian_noise)
    predict = guided(model, x, extra_args, multiplier, uncond_blend)
    return dpmpp_2m_sde_loop(predict, x, sigmas, callback, steps(len(sigmas) - 1, disable, progress), eta,
                             s_noise, noise_sampler, solver_type)


@torch.no_grad()
def sample_dpmpp_3m_sde_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None, eta: float = 1.0,
                               s_noise: float = 1.0, noise_sampler=None, *, multiplier: float = DEFAULT_MULTIPLIER,
                               brownian_noise: Optional[BrownianFactory] = None,
                               uncond_blend: Optional[UncondBlend] = None, progress: Optional[Progress] = None):
    """DPM++ 3M SDE CFG++. Base: k-diffusion ``sample_dpmpp_3m_sde`` (third-order multistep DPM-Solver++ in
    its SDE form, Lu et al. 2022, arXiv 2211.01095). With H = (1+η)h, φ₂ = (e^{−H} − 1)/H + 1,
    φ₃ = φ₂/H − ½, r₀ = h_{i−1}/h, r₁ = h_{i−2}/h, z = noise(σ, σ'):

    - σ' = 0: ``x' = D_λ,i``;
    - else ``x' = D_λ,i + e^{−H}(x − D_∅,i) + E + s_noise·σ'·√(1 − e^{−2ηh})·z`` with the history term
      E = 0 (first step); E = φ₂·(D_λ,i − D_∅,i−1)/r₀ (second step); from the third step, with
      δ₀ = (D_λ,i − D_∅,i−1)/r₀ and δ₁ = (D_∅,i−1 − D_∅,i−2)/r₁:
      E = φ₂·(δ₀ + (δ₀ − δ₁)·r₀/(r₀ + r₁)) − φ₃·(δ₀ − δ₁)/(r₀ + r₁).

    Upstream: reForge's "DPM++ 3M SDE CFG++" (and a ComfyUI custom node) keep the D_λ history, i.e.
    differences of D_λ only. We keep the D_∅ history, with the current D_λ entering the newest difference,
    as the official DPM++ 2M CFG++ (one rule for our multistep family; the second step of this sampler is
    then the 2M SDE CFG++ history term with the Heun coefficient, as in the base).
    """
    noise_sampler = brownian_or_given(x, sigmas, noise_sampler, brownian_noise)
    predict = guided(model, x, extra_args, multiplier, uncond_blend)
    return dpmpp_3m_sde_loop(predict, x, sigmas, callback, steps(len(sigmas) - 1, disable, progress), eta,
                             s_noise, noise_sampler)
