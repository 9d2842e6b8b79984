"""CFG++ sampler overhead: each CFG++ sampler against its base k-diffusion sampler, same model, same
sigmas, same steps, through the same CFG denoiser double (cond rows + uncond rows per call).

The CFG++ extra work per model call is the host's clone of the uncond rows (``need_last_noise_uncond``)
plus a few element-wise ops on the latent; everything else is the model. A tiny SD1.5-layout UNet
(32 channels) makes the model cheap, so the ratio here is an upper bound of what a real UNet shows.

Numbers: ``overhead_ratio_<sampler>`` = median over repetitions of (CFG++ run time / base run time) for
runs made back to back (interleaved, order alternating, so each pair shares the machine's load),
``overhead_ratio`` = the largest of them, ``min_ratio_<sampler>`` = the same with the
fastest runs (robust when the CPU is shared: interference only adds time), ``base_seconds_<sampler>`` =
median base run, ``extra_ms_per_call_<sampler>`` = (CFG++ − base) time per model call with a zero-cost
model inside the same CFG denoiser double (the sampler-side overhead alone, median over runs);
``steps``, ``latent_side``, ``repeats``, ``cuda``. Target: ratio <= 1.02.
"""
from __future__ import annotations

import statistics
import time

import torch

from support.cfg_denoiser_double import CFGDenoiserDouble
from support.kdiffusion_import import import_k_diffusion
from support.tiny_models import make_context, make_denoiser, make_ldm

import lib_cfgpp

KEYS = {"Euler CFG++": "euler", "Euler a CFG++": "euler_a", "DPM++ 2M CFG++": "dpmpp_2m",
        "DPM++ 2S a CFG++": "dpmpp_2s_a"}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device):
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _measure(k_sampling, inner, x, sigmas, args, repeats, device, count_calls=False):
    """{label: (base run times, CFG++ run times, model calls per run)}, interleaved, alternating order."""
    pairs = {}
    for definition in lib_cfgpp.SAMPLERS:
        cfgpp = lib_cfgpp.make_sampler(definition)
        base = getattr(k_sampling, definition.base_function)
        pairs[definition.label] = (
            lambda fn=base: fn(CFGDenoiserDouble(inner), x, sigmas, extra_args=args, disable=True),
            lambda fn=cfgpp: fn(CFGDenoiserDouble(inner), x, sigmas, extra_args=args, disable=True),
        )
    times = {label: ([], [], 0) for label in pairs}
    with torch.no_grad():
        for label, (base_run, cfgpp_run) in pairs.items():  # warm-up, and count the model calls
            base_run()
            double = CFGDenoiserDouble(inner)
            lib_cfgpp.make_sampler(label)(double, x, sigmas, extra_args=args, disable=True)
            times[label] = ([], [], double.step)
        for rep in range(repeats):
            for label, (base_run, cfgpp_run) in pairs.items():
                order = ((0, base_run), (1, cfgpp_run)) if rep % 2 == 0 else ((1, cfgpp_run), (0, base_run))
                for slot, fn in order:
                    times[label][slot].append(_timed(fn, device))
    return times


def run(quick: bool = False) -> dict:
    k_sampling = import_k_diffusion().sampling
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)  # a tiny model gains nothing from more; shared cores make 2+ erratic
    try:
        steps, side, repeats, batch = (4, 8, 3, 1) if quick else (10, 16, 11, 1)
        ldm = make_ldm("sd15").to(device)
        den = make_denoiser(ldm).to(device)
        sigmas = k_sampling.get_sigmas_karras(steps, den.sigmas[0].item(), den.sigmas[-1].item(), device=device)
        x = torch.randn(batch, 4, side, side, generator=torch.Generator().manual_seed(0)).to(device) * sigmas[0]
        args = {"cond": make_context("sd15", batch, seed=1).to(device),
                "uncond": make_context("sd15", batch, seed=2).to(device),
                "cond_scale": 7.0, "s_min_uncond": 0.0, "image_cond": None}
        real = _measure(k_sampling, den, x, sigmas, args, repeats, device)
        free = _measure(k_sampling, lambda x_in, sigma_in, cond: x_in * 0.9, x, sigmas, args,
                        repeats * 5, device, count_calls=True)
        result = {}
        for label, (base_times, cfgpp_times, _) in real.items():
            key = KEYS[label]
            base_median = statistics.median(base_times)
            result[f"overhead_ratio_{key}"] = statistics.median(c / b for b, c in zip(base_times, cfgpp_times))
            result[f"min_ratio_{key}"] = min(cfgpp_times) / min(base_times)
            result[f"base_seconds_{key}"] = base_median
            free_base, free_cfgpp, calls = free[label]
            result[f"extra_ms_per_call_{key}"] = 1e3 * (statistics.median(free_cfgpp) - statistics.median(free_base)) / calls
        result["overhead_ratio"] = max(v for k, v in result.items() if k.startswith("overhead_ratio_"))
        result.update(steps=steps, latent_side=side, repeats=repeats, cuda=float(device.type == "cuda"))
        return result
    finally:
        torch.set_num_threads(threads)
