"""reForge's own CFG++ samplers and the table entries that name them (the host-native samplers ours must not
replace).

`sample_euler_cfg_pp` / `sample_dpmpp_2m_cfg_pp` follow ldm_patched/k_diffusion/sampling.py of reForge: the
unconditional x0 comes from a post-CFG function that records `args["uncond_denoised"]` and returns
`args["denoised"]`, set on a copy of `extra_args["model_options"]` with `disable_cfg1_optimization`
(model_patcher.set_model_options_post_cfg_function); the CFG scale is λ itself (no multiplier).
Euler CFG++: x ← D_λ + σ_{i+1}·(x − D_∅)/σ_i. DPM++ 2M CFG++ (t = −log σ, h = t_{i+1} − t_i):
x ← D_λ − e^{−h}·D_∅ + e^{−h}·x, with the second-order term −(e^{−h} − 1)/(2r)·(D_λ − D_∅,prev), r = h_prev/h,
from the second step on while σ_{i+1} > 0.

`TABLE`: the CFG++-related entries of modules_forge/forge_alter_samplers.py `samplers_data_alter` (label, aliases);
the two above run, the others stand in by name (`not_in_double` raises if one is sampled).
"""
from __future__ import annotations

import torch
from tqdm.auto import trange

from .model_patcher import set_model_options_post_cfg_function


def _capture(extra_args):
    seen = {}

    def post_cfg_function(args):
        seen["uncond"] = args["uncond_denoised"]
        return args["denoised"]
    extra_args = dict(extra_args or {})
    extra_args["model_options"] = set_model_options_post_cfg_function(
        dict(extra_args.get("model_options", {})), post_cfg_function, disable_cfg1_optimization=True)
    return extra_args, seen


@torch.no_grad()
def sample_euler_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None):
    extra_args, seen = _capture(extra_args)
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = denoised + (x - seen["uncond"]) / sigmas[i] * sigmas[i + 1]
    return x


@torch.no_grad()
def sample_dpmpp_2m_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None):
    extra_args, seen = _capture(extra_args)
    s_in = x.new_ones([x.shape[0]])
    previous = None
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        t, t_next = -sigmas[i].log(), -sigmas[i + 1].log()
        h = t_next - t
        mix = -torch.exp(-h) * seen["uncond"]
        if previous is not None and sigmas[i + 1] != 0:
            r = (t - (-sigmas[i - 1].log())) / h
            mix = mix - torch.expm1(-h) * (1 / (2 * r)) * (denoised - previous)
        x = denoised + mix + torch.exp(-h) * x
        previous = seen["uncond"]
    return x


def not_in_double(model, x, sigmas, extra_args=None, callback=None, disable=None):
    raise NotImplementedError("this reForge sampler is only named in the Forge double")


TABLE = (
    ("Euler CFG++", sample_euler_cfg_pp, ["euler_cfg_pp"]),
    ("Euler Ancestral CFG++", not_in_double, ["euler_ancestral_cfg_pp"]),
    ("DPM++ 2S Ancestral CFG++", not_in_double, ["dpmpp_2s_ancestral_cfg_pp"]),
    ("DPM++ 2M CFG++", sample_dpmpp_2m_cfg_pp, ["dpmpp_2m_cfg_pp"]),
    ("DPM++ SDE CFG++", not_in_double, ["dpmpp_sde_cfg_pp"]),
    ("DPM++ 3M SDE CFG++", not_in_double, ["dpmpp_3m_sde_cfg_pp"]),
    ("RES Multistep", not_in_double, ["res_multistep"]),
    ("RES Multistep CFG++", not_in_double, ["res_multistep_cfg_pp"]),
    ("RES Multistep Ancestral", not_in_double, ["res_multistep_ancestral"]),
    ("RES Multistep Ancestral CFG++", not_in_double, ["res_multistep_ancestral_cfg_pp"]),
    ("Gradient Estimation", not_in_double, ["gradient_estimation"]),
    ("Gradient Estimation CFG++", not_in_double, ["gradient_estimation_CFG++"]),
)
