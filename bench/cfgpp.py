"""CFG++ sampler overhead: each CFG++ sampler against its base sampler (k-diffusion's, or ours for RES multistep
and gradient estimation), same model, same sigmas, same steps, same noise (SDE: a fresh Brownian tree with the same
seeds for both; ancestral: unseeded draws), through the same CFG denoiser double (cond rows + uncond rows per call).

The CFG++ extra work per model call is the host's clone of the uncond rows (``need_last_noise_uncond``)
plus a few element-wise ops on the latent; everything else is the model. A tiny SD1.5-layout UNet
(32 channels) makes the model cheap, so the ratio here is an upper bound of what a real UNet shows.

Numbers: ``overhead_ratio_<sampler>`` = median over repetitions of (CFG++ run time / base run time) for
runs made back to back (interleaved, order alternating, so each pair shares the machine's load; on CPU timed in
process CPU time, see ``_clock``),
``overhead_ratio`` = the largest of them, ``min_ratio_<sampler>`` = the same with the
fastest runs (robust when the CPU is shared: interference only adds time), ``base_seconds_<sampler>`` =
median base run, ``extra_ms_per_call_<sampler>`` = (CFG++ − base) time per model call with a zero-cost
model inside the same CFG denoiser double (the sampler-side overhead alone, median over runs);
``parts_ratio_<sampler>`` = 1 + that extra time × model calls / ``base_seconds`` (the ratio the measured
sampler-side cost implies: on a tiny model whole-run ratios vary by a few % from run to run even on an idle
machine, this stays within about 0.5 %), ``parts_ratio`` = the largest of them;
``steps``, ``latent_side``, ``repeats``, ``cuda``. Target: ratio <= 1.02. Keys: the sampler's first alias
without ``k_`` and ``_cfg_pp`` (``euler``, ``dpmpp_2m_sde``, ``res_multistep_a``, ...).
"""
from __future__ import annotations

import statistics
import time
import warnings

import torch

from support.cfg_denoiser_double import CFGDenoiserDouble
from support.kdiffusion_import import import_k_diffusion
from support.tiny_models import make_context, make_denoiser, make_ldm

import lib_cfgpp

KEYS = {d.label: d.aliases[0][len("k_"):-len("_cfg_pp")] for d in lib_cfgpp.SAMPLERS}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _clock(device):
    """CUDA: wall clock (kernels run asynchronously; synchronised around each run). CPU (one intra-op thread): this
    process's CPU time, so time other processes take on shared cores is not counted against either sampler."""
    return time.perf_counter if device.type == "cuda" else time.process_time


def _timed(fn, device):
    clock = _clock(device)
    _sync(device)
    start = clock()
    fn()
    _sync(device)
    return clock() - start


def _noise(k_sampling, definition, x, sigmas):
    """The same noise for both runs of a pair: a fresh Brownian tree (seeds 1..B) for SDE samplers, as the WebUI
    builds one per generation; nothing for the others (ancestral: unseeded draws, same cost)."""
    if not definition.brownian:
        return {}
    positive = sigmas[sigmas > 0]
    seeds = list(range(1, x.shape[0] + 1))
    return {"noise_sampler": k_sampling.BrownianTreeNoiseSampler(x, positive.min(), positive.max(), seed=seeds)}


def _measure(k_sampling, inner, x, sigmas, args, repeats, device, count_calls=False):
    """{label: (base run times, CFG++ run times, model calls per run)}, interleaved, alternating order."""
    pairs = {}
    for definition in lib_cfgpp.SAMPLERS:
        cfgpp = lib_cfgpp.make_sampler(definition)
        base = lib_cfgpp.base_function(definition, k_sampling)
        pairs[definition.label] = tuple(
            lambda fn=fn, d=definition: fn(CFGDenoiserDouble(inner), x, sigmas, extra_args=args, disable=True,
                                           **_noise(k_sampling, d, x, sigmas))
            for fn in (base, cfgpp))
    times = {label: ([], [], 0) for label in pairs}
    with torch.no_grad():
        for label, (base_run, cfgpp_run) in pairs.items():  # warm-up, and count the model calls
            base_run()
            double = CFGDenoiserDouble(inner)
            definition = lib_cfgpp.find(label)
            lib_cfgpp.make_sampler(definition)(double, x, sigmas, extra_args=args, disable=True,
                                               **_noise(k_sampling, definition, x, sigmas))
            times[label] = ([], [], double.step)
        for rep in range(repeats):
            for label, (base_run, cfgpp_run) in pairs.items():
                order = ((0, base_run), (1, cfgpp_run)) if rep % 2 == 0 else ((1, cfgpp_run), (0, base_run))
                for slot, fn in order:
                    times[label][slot].append(_timed(fn, device))
    return times


def run(quick: bool = False) -> dict:
    # torchsde warns when a float32 sigma lands a rounding below the tree's float bound (as in the WebUI): noise here
    warnings.filterwarnings("ignore", message="Should have", category=UserWarning, module="torchsde")
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
            extra = (statistics.median(free_cfgpp) - statistics.median(free_base)) / calls
            result[f"extra_ms_per_call_{key}"] = 1e3 * extra
            result[f"parts_ratio_{key}"] = 1 + extra * calls / base_median
        result["overhead_ratio"] = max(v for k, v in result.items() if k.startswith("overhead_ratio_"))
        result["parts_ratio"] = max(v for k, v in result.items() if k.startswith("parts_ratio_"))
        result.update(steps=steps, latent_side=side, repeats=repeats, cuda=float(device.type == "cuda"))
        return result
    finally:
        torch.set_num_threads(threads)
