"""AUTOMATIC1111 WebUI v1.10.x: the host the suite is built for; this is what the scripts did before the seam.

Relies on (read in v1.10.1, reproduced by the double under tests/host):
- the UNet at `sd_model.model.diffusion_model` is called module by module through `nn.Module.__call__`, so
  instance-level `forward` wrappers on its blocks, Downsample/Upsample, SpatialTransformer and attn1 run
  (lib_hidiffusion.patcher);
- `StableDiffusionProcessing.txt2img_image_conditioning` / `img2img_image_conditioning` build each pass's image
  conditioning, which `CFGDenoiser` hands to the model as `c_concat` (v1.10.1 processing.py, sd_samplers_cfg_denoiser);
- `CFGDenoiser.forward` combines cond and uncond with `cond_scale * cond_scale_miltiplier` and, with
  `need_last_noise_uncond`, keeps the uncond rows of the model output in `last_noise_uncond` (x0 on the
  k-diffusion path): CFG++ samplers read both directly;
- samplers are `SamplerData` in `sd_samplers.all_samplers` / `all_samplers_map` (suite_glue.samplers).
"""
from __future__ import annotations

from typing import Callable, Iterable

from .base import Host
from .libs import lib


class A1111Host(Host):
    def check(self, feature, p=None, parts=()):
        return None

    def apply_unet_patches(self, p, unet, config, state):
        lib("lib_hidiffusion").apply(unet, config, state)

    def remove_unet_patches(self, unet):
        lib("lib_hidiffusion").remove(unet)

    def supply_concat(self, p, for_latent: Callable):
        p.txt2img_image_conditioning = lambda x, width=None, height=None: for_latent(x)
        p.img2img_image_conditioning = (lambda source_image, latent_image, image_mask=None, round_image_mask=True:
                                        for_latent(latent_image))

    def guided_sampler(self, function):
        return function

    def register_samplers(self, entries: Iterable):
        from .. import samplers as glue_samplers
        return glue_samplers.register_kdiffusion_samplers(entries)
