"""reForge's `CFGDenoiser.forward` (modules/sd_samplers_cfg_denoiser.py), put in place of the A1111 double's.

In order: interrupt check; `apply_refiner`; `reconstruct_multicond_batch` / `reconstruct_cond_batch`; the mask blend
before denoising (`mask_before_denoising`); `CFGDenoiserParams(x, image_cond, sigma, ...)` through the
`cfg_denoiser` callbacks with x/sigma/image_cond of the B image rows only (no cond/uncond repetition); in the hires
pass the CFG scale is `p.hr_cfg`; the uncond pass is skipped (cond scale 1, uncond None) for NGMS
(`opts.s_min_uncond`, every other step) and `opts.skip_early_cond`; the model options are the UNet patcher's,
updated with a `model_options` keyword of the call; conds become patched-ldm dicts
(modules_forge/forge_sampler.cond_from_a1111_to_patched_ldm[_weighted]); `extra_concat_condition` or the image
conditioning becomes `c_concat` ONLY when its batch and spatial size equal x's (else silently dropped);
`sampling_function` returns the guided x0; `last_noise_uncond` (with `need_last_noise_uncond`) = a copy of that
guided prediction (zeros when the uncond pass was skipped); `combine_denoised` copies it (`cond_scale_miltiplier`
only reaches the edit-model combine); the mask blend after denoising with `on_mask_blend`; `sampler.last_latent`;
the `cfg_after_cfg` callbacks; `step += 1`. Not reproduced: the DDIM eps estimation, dynamic clip skip,
cond/uncond padding, conditioning modifiers, ControlNet.
"""
from __future__ import annotations

import torch

from modules import prompt_parser, sd_samplers_common, shared
from modules.script_callbacks import (AfterCFGCallbackParams, CFGDenoiserParams, cfg_after_cfg_callback,
                                      cfg_denoiser_callback)

from .sampling import sampling_function


def cond_from_a1111(cond):
    if isinstance(cond, dict):
        return [{"model_conds": {"c_crossattn": cond["crossattn"], "y": cond["vector"]}}]
    return [{"model_conds": {"c_crossattn": cond}}]


def cond_from_a1111_weighted(cond, composition):
    if any(len(parts) != 1 for parts in composition):
        raise NotImplementedError("the Forge double has no AND prompts")
    entries = cond_from_a1111(cond)
    entries[0]["strength"] = composition[0][0][1]
    return entries


def forward(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond, **kwargs):
    state, opts = shared.state, shared.opts
    if state.interrupted or state.skipped:
        raise sd_samplers_common.InterruptedException
    if sd_samplers_common.apply_refiner(self, sigma):
        cond = self.sampler.sampler_extra_args["cond"]
        uncond = self.sampler.sampler_extra_args["uncond"]
    composition, cond = prompt_parser.reconstruct_multicond_batch(cond, self.step)
    uncond = prompt_parser.reconstruct_cond_batch(uncond, self.step)
    is_edit_model = (shared.sd_model.cond_stage_key == "edit" and self.image_cfg_scale is not None
                     and self.image_cfg_scale != 1.0)

    def apply_blend(latent):
        blended = latent * self.nmask + self.init_latent * self.mask
        if self.p.scripts is not None:
            from modules import scripts
            mba = scripts.MaskBlendArgs(latent, self.nmask, self.init_latent, self.mask, blended, denoiser=self,
                                        sigma=sigma)
            self.p.scripts.on_mask_blend(self.p, mba)
            blended = mba.blended_latent
        return blended

    if self.mask_before_denoising and self.mask is not None:
        x = apply_blend(x)

    params = CFGDenoiserParams(x, image_cond, sigma, state.sampling_step, state.sampling_steps, cond, uncond, self)
    cfg_denoiser_callback(params)

    if self.p.is_hr_pass and getattr(self.p, "hr_cfg", None) is not None:
        cond_scale = self.p.hr_cfg
    skip_uncond = False
    s_min = getattr(opts, "s_min_uncond", 0.0)
    if s_min > 0 and sigma[0] < s_min and not is_edit_model and (self.step % 2 == 0 or opts.s_min_uncond_all):
        skip_uncond = True
    elif self.step < opts.skip_early_cond or (opts.skip_early_cond != 0 and
                                              self.step / self.total_steps <= opts.skip_early_cond):
        skip_uncond = True

    unet = self.inner_model.inner_model.forge_objects.unet
    model_options = unet.model_options
    if kwargs.get("model_options"):
        model_options = {**model_options, **kwargs["model_options"]}
    uncond_patched = cond_from_a1111(params.text_uncond)
    cond_patched = cond_from_a1111_weighted(params.text_cond, composition)
    image_cond_in = unet.extra_concat_condition if unet.extra_concat_condition is not None else params.image_cond
    if isinstance(image_cond_in, torch.Tensor) and image_cond_in.shape[0] == x.shape[0] \
            and image_cond_in.shape[2:] == x.shape[2:]:
        for entry in uncond_patched + cond_patched:
            entry["model_conds"]["c_concat"] = image_cond_in
    seed = self.p.seeds[0]
    if skip_uncond:
        denoised = sampling_function(unet.model, x, sigma, None, cond_patched, 1.0, model_options, seed)
    else:
        denoised = sampling_function(unet.model, x, sigma, uncond_patched, cond_patched, cond_scale, model_options,
                                     seed)

    if self.need_last_noise_uncond:
        self.last_noise_uncond = torch.zeros_like(x) if skip_uncond else torch.clone(denoised[-uncond.shape[0]:])
    if is_edit_model:
        denoised = self.combine_denoised_for_edit_model(denoised, cond_scale * self.cond_scale_miltiplier)
    elif not skip_uncond:
        denoised = torch.clone(denoised[-uncond.shape[0]:])  # reForge combine_denoised
    if not self.mask_before_denoising and self.mask is not None:
        denoised = apply_blend(denoised)
    self.sampler.last_latent = denoised
    after = AfterCFGCallbackParams(denoised, state.sampling_step, state.sampling_steps)
    cfg_after_cfg_callback(after)
    self.step += 1
    return after.x
