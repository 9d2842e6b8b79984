"""A small double of the WebUI v1.10.1 ``CFGDenoiser`` for the CFG++ core tests.

Reproduces the parts of ``modules/sd_samplers_cfg_denoiser.py`` the samplers depend on (one prompt per
image, no AND / prompt schedules / callbacks):

- batching: cond rows first, uncond rows last (``x_in = cat([x, x])``); an edit model
  (``cond_stage_key == 'edit'`` and ``image_cfg_scale`` not in (None, 1)) uses the 3-way batch
  [cond + image, uncond + image, uncond + zeros];
- combine: ``D_∅ + (D_c − D_∅) · cond_scale · cond_scale_miltiplier`` (edit: the host's 3-way formula);
- ``need_last_noise_uncond`` -> ``last_noise_uncond`` = clone of the uncond rows of the model output;
- skip-uncond (NGMS: ``(step % 2 or s_min_uncond_all) and s_min_uncond > 0 and sigma[0] < s_min_uncond``;
  skip early CFG: ``step / total_steps <= skip_early_cond``): only the cond rows are evaluated, the cond
  output is put where the uncond output would be, and combine uses scale 1.0;
- inpainting blend ``D·nmask + init_latent·mask`` after denoising (or on x before, when
  ``mask_before_denoising``);
- cond and uncond of different token lengths (prompts over 75 tokens, ``pad_cond_uncond`` off as by default):
  two model calls, the cond rows then the uncond rows (an edit model fails there, as in v1.10.1).

``inner`` is called as ``inner(x, sigma, cond={...})``: a k-diffusion ``CompVis(V)Denoiser`` (returns
x0) or a timestep wrapper (returns eps) — the combine is linear, so both work.
"""
from __future__ import annotations

import torch
from torch import nn


def _cat_conds(conds):
    if isinstance(conds[0], dict):
        return {k: torch.cat([c[k] for c in conds]) for k in conds[0]}
    return torch.cat(conds)


def _tokens(c):
    return (c["crossattn"] if isinstance(c, dict) else c).shape[1]


def _condition_dict(c, image_cond):
    if isinstance(c, dict):
        return {**c, "c_concat": [image_cond]}
    return {"c_crossattn": [c], "c_concat": [image_cond]}


class CFGDenoiserDouble(nn.Module):
    def __init__(self, inner, *, cond_stage_key: str = "txt", s_min_uncond_all: bool = False,
                 skip_early_cond: float = 0.0, total_steps: int = 1):
        super().__init__()
        self.inner_model = inner
        self.cond_stage_key = cond_stage_key
        self.s_min_uncond_all = s_min_uncond_all
        self.skip_early_cond = skip_early_cond
        self.total_steps = total_steps
        self.step = 0
        self.image_cfg_scale = None
        self.cond_scale_miltiplier = 1.0
        self.need_last_noise_uncond = False
        self.last_noise_uncond = None
        self.mask = None
        self.nmask = None
        self.init_latent = None
        self.mask_before_denoising = False
        self.skipped = []  # per model call: whether the uncond pass was skipped

    def _blend(self, latent):
        return latent * self.nmask + self.init_latent * self.mask

    def forward(self, x, sigma, uncond, cond, cond_scale, s_min_uncond=0.0, image_cond=None):
        batch = x.shape[0]
        is_edit = self.cond_stage_key == "edit" and self.image_cfg_scale is not None and self.image_cfg_scale != 1.0
        if image_cond is None:
            image_cond = x.new_zeros([batch, 0, *x.shape[2:]])
        if self.mask_before_denoising and self.mask is not None:
            x = self._blend(x)

        skip = False
        if self.skip_early_cond != 0.0 and self.step / self.total_steps <= self.skip_early_cond:
            skip = True
        elif (self.step % 2 or self.s_min_uncond_all) and s_min_uncond > 0 and sigma[0] < s_min_uncond and not is_edit:
            skip = True
        self.skipped.append(skip)

        if is_edit:
            x_in = torch.cat([x, x, x])
            sigma_in = torch.cat([sigma, sigma, sigma])
            image_in = torch.cat([image_cond, image_cond, torch.zeros_like(self.init_latent)])
            cond_in = [cond, uncond, uncond]
        elif skip:
            x_in, sigma_in, image_in, cond_in = x, sigma, image_cond, [cond]
        else:
            x_in = torch.cat([x, x])
            sigma_in = torch.cat([sigma, sigma])
            image_in = torch.cat([image_cond, image_cond])
            cond_in = [cond, uncond]

        if not is_edit and not skip and _tokens(cond) != _tokens(uncond):  # two calls: cond rows, uncond rows
            x_out = torch.cat([self.inner_model(x, sigma, cond=_condition_dict(cond, image_cond)),
                               self.inner_model(x, sigma, cond=_condition_dict(uncond, image_cond))])
        else:
            x_out = self.inner_model(x_in, sigma_in, cond=_condition_dict(_cat_conds(cond_in), image_in))
        if skip:
            x_out = torch.cat([x_out, x_out[:batch]])

        if self.need_last_noise_uncond:
            self.last_noise_uncond = torch.clone(x_out[-batch:])

        scale = cond_scale * self.cond_scale_miltiplier
        if is_edit:
            out_cond, out_img_cond, out_uncond = x_out.chunk(3)
            denoised = out_uncond + scale * (out_cond - out_img_cond) + self.image_cfg_scale * (out_img_cond - out_uncond)
        else:
            d_uncond = x_out[-batch:]
            denoised = d_uncond + (x_out[:batch] - d_uncond) * (1.0 if skip else scale)

        if not self.mask_before_denoising and self.mask is not None:
            denoised = self._blend(denoised)
        self.step += 1
        return denoised


class Unconditional(nn.Module):
    """A plain (no-CFG) model for base k-diffusion samplers: ``inner(x, sigma, cond=uncond)``."""

    def __init__(self, inner, uncond, image_cond=None):
        super().__init__()
        self.inner_model = inner
        self.uncond = uncond
        self.image_cond = image_cond

    def forward(self, x, sigma, **_):
        image_cond = self.image_cond if self.image_cond is not None else x.new_zeros([x.shape[0], 0, *x.shape[2:]])
        return self.inner_model(x, sigma, cond=_condition_dict(self.uncond, image_cond))
