"""Forge-family sampling: the model call and the CFG combine that return the GUIDED x0.

Follows reForge ldm_patched/modules/samplers.py and ldm_patched/modules/model_base.py:
- `sampling_function(model, x, timestep, uncond, cond, cond_scale, model_options, seed)`: uncond is dropped when
  cond_scale is 1 unless `model_options["disable_cfg1_optimization"]`; `calc_cond_batch` on [cond, uncond];
  returns `cfg_function(...)`, the guided prediction (never the cond/uncond outputs themselves).
- `cfg_function`: D = uncond + (cond − uncond)·cond_scale (·edit_strength when the cond weights do not sum to 1);
  then every `model_options["sampler_post_cfg_function"]` gets {"denoised", "cond", "uncond" (None when
  skipped), "cond_scale", "model", "uncond_denoised", "cond_denoised", "sigma", "model_options", "input"} and its
  return value replaces D.
- `calc_cond_batch`: every cond entry's `model_conds` batched into one `model.apply_model` call with
  `transformer_options` = model_options' plus "cond_or_uncond" and "sigmas"; a cond list that is None adds
  nothing, so its output is zeros (out / count with count 1e-37).
- `BaseModel.apply_model(x, t, c_concat, c_crossattn, y, transformer_options)`: x scaled for the model input,
  `c_concat` joined on the channels whenever given, the UNet called with `transformer_options`, x0 returned. The
  scalings and the timestep come from the k-diffusion CompVis wrapper of the A1111 double (see the package doc).
"""
from __future__ import annotations

import math

import torch


class BaseModel:
    def __init__(self, diffusion_model, wrap):
        self.diffusion_model = diffusion_model
        self.wrap = wrap  # k_diffusion CompVisDenoiser / CompVisVDenoiser over the same model

    def apply_model(self, x, t, c_concat=None, c_crossattn=None, y=None, transformer_options=None, **kwargs):
        sigma = t
        scalings = [s[:, None, None, None] for s in self.wrap.get_scalings(sigma)]
        xc = x * scalings[-1]
        if c_concat is not None:
            xc = torch.cat([xc, c_concat], dim=1)
        out = self.diffusion_model(xc, self.wrap.sigma_to_t(sigma), context=c_crossattn, y=y,
                                   transformer_options=transformer_options if transformer_options is not None else {})
        if len(scalings) == 2:  # eps: c_out, c_in
            return x + out * scalings[0]
        return x * scalings[0] + out * scalings[1]  # v: c_skip, c_out, c_in


def calc_cond_batch(model, conds, x_in, timestep, model_options):
    to_run = [(entry, index) for index, cond in enumerate(conds) if cond is not None for entry in cond]
    out_conds = [torch.zeros_like(x_in) for _ in conds]
    out_counts = [torch.ones_like(x_in) * 1e-37 for _ in conds]
    if not to_run:
        return out_conds
    keys = to_run[0][0]["model_conds"].keys()
    c = {key: torch.cat([entry["model_conds"][key] for entry, _ in to_run]) for key in keys}
    transformer_options = {**model_options.get("transformer_options", {}),
                           "cond_or_uncond": [index for _, index in to_run], "sigmas": timestep}
    output = model.apply_model(torch.cat([x_in] * len(to_run)), torch.cat([timestep] * len(to_run)),
                               transformer_options=transformer_options, **c).chunk(len(to_run))
    for chunk, (_, index) in zip(output, to_run):
        out_conds[index] += chunk
        out_counts[index] += 1.0
    return [o / n for o, n in zip(out_conds, out_counts)]


def cfg_function(model, cond_pred, uncond_pred, cond_scale, x, timestep, model_options, cond=None, uncond=None):
    edit_strength = sum(item.get("strength", 1) for item in cond)
    if uncond_pred is None:
        result = cond_pred
    elif not math.isclose(edit_strength, 1.0):
        result = uncond_pred + (cond_pred - uncond_pred) * cond_scale * edit_strength
    else:
        result = uncond_pred + (cond_pred - uncond_pred) * cond_scale
    for fn in model_options.get("sampler_post_cfg_function", []):
        result = fn({"denoised": result, "cond": cond, "uncond": uncond, "cond_scale": cond_scale, "model": model,
                     "uncond_denoised": uncond_pred, "cond_denoised": cond_pred, "sigma": timestep,
                     "model_options": model_options, "input": x})
    return result


def sampling_function(model, x, timestep, uncond, cond, cond_scale, model_options={}, seed=None):
    if math.isclose(cond_scale, 1.0) and not model_options.get("disable_cfg1_optimization", False):
        uncond_ = None
    else:
        uncond_ = uncond
    out = calc_cond_batch(model, [cond, uncond_], x, timestep, model_options)
    return cfg_function(model, out[0], out[1], cond_scale, x, timestep, model_options, cond=cond, uncond=uncond_)
