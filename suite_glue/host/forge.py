"""The Forge family (reForge, Forge Classic, Forge 1.x with `ldm_patched`; Forge 2.x / Forge Neo with `backend`).

These forks keep A1111's script API but sample through their own model patcher, so the A1111 routes can silently do
nothing there (see forge_cfgpp, forge_unet). Per feature:

=============  ===============================================  ===========================================
feature        ldm_patched hosts (reForge, Forge Classic)       backend hosts (Forge 2.x, Forge Neo)
=============  ===============================================  ===========================================
CFG++          post-CFG function (forge_cfgpp)                  same route (Forge 2.x sampling_function)
HiDiffusion    RAD/RAU + MSW-MSA wrappers, pool/bicubic as      refused (other UNet code, backend.nn.unet)
               block patches (forge_unet); refiner refused
IC-Light       refused (weights and c_concat are the patcher's) refused
=============  ===============================================  ===========================================

Relies on, besides what forge_cfgpp and forge_unet state: the CFG denoiser calls the `cfg_denoiser` callbacks with
`denoiser` (sampler, p) and `sigma` as A1111 does (reForge `CFGDenoiser.forward`), so HiDiffusion locates steps
the same way; `KDiffusionSampler(function, sd_model)` accepts a function and `get_sigmas(p, steps)` as A1111's.

Sampler names: reForge registers its own "Euler CFG++", "DPM++ 2M CFG++", ... (modules_forge/forge_alter_samplers.py,
aliases "euler_cfg_pp", ...). None of ours replaces one: a label the host already uses (as a name or alias) gets
`LABEL_SUFFIX`, an alias the host uses is left out (`registered_label` maps our label to the one registered).
"""
from __future__ import annotations

import functools
from typing import Iterable

from .base import CFGPP, DEPTH, EDIT, HIDIFFUSION, ICLIGHT, Host, HostRefusal
from .detect import FORGE_LDM_PATCHED
from .forge_cfgpp import CfgppDenoiser
from .forge_unet import BlockPatches, bypasses
from .libs import lib

LABEL_SUFFIX = " (suite)"


class ForgeHost(Host):
    def __init__(self, family):
        super().__init__(family)
        self._blocks = BlockPatches()
        self._labels = {}

    @property
    def has_ldm_patched(self) -> bool:
        return self.family.kind == FORGE_LDM_PATCHED

    # --- refusals ------------------------------------------------------------------------------------------
    def check(self, feature, p=None, parts=()):
        name = self.name
        if feature == EDIT:
            raise HostRefusal(f"{EDIT} (the suite's SDXL InstructPix2Pix / CosXL Edit support) does not run on {name}: "
                              "this WebUI loads checkpoints and builds their conditioning through its own model "
                              "code. Use AUTOMATIC1111 WebUI v1.10, or this WebUI's own InstructPix2Pix support.")
        if feature == DEPTH:
            raise HostRefusal(f"{DEPTH} (a depth map for SD 2 depth checkpoints) does not run on {name}: this WebUI "
                              "builds the concat conditioning through its own model code. Use AUTOMATIC1111 WebUI "
                              "v1.10, or this WebUI's own depth support.")
        if feature == ICLIGHT:
            raise HostRefusal(f"{ICLIGHT} does not run on {name}: this WebUI loads and patches the UNet weights and "
                              "the concat conditioning through its own model patcher, which would drop IC-Light's "
                              "merge. Use AUTOMATIC1111 WebUI v1.10 for IC-Light, or an IC-Light extension made "
                              "for Forge (e.g. sd-forge-ic-light).")
        if feature == HIDIFFUSION:
            if not self.has_ldm_patched:
                raise HostRefusal(f"{HIDIFFUSION} does not run on {name}: its UNet (backend.nn.unet) is not the "
                                  "ldm/sgm UNet HiDiffusion patches. Use AUTOMATIC1111 WebUI v1.10, reForge or Forge "
                                  "Classic, or this WebUI's built-in 'Kohya HRFix Integrated' for high resolutions.")
            refiner, switch_at = getattr(p, "refiner_checkpoint", None), getattr(p, "refiner_switch_at", None)
            if refiner not in (None, "", "None", "none") and (switch_at is None or switch_at < 1):
                raise HostRefusal(f"{HIDIFFUSION} on {name}: the refiner ('{refiner}') swaps the model patcher in "
                                  "the middle of sampling, which drops HiDiffusion's block patches for the remaining "
                                  "steps. Turn the refiner off (or leave its checkpoint empty) to use HiDiffusion.")

    # --- HiDiffusion ---------------------------------------------------------------------------------------
    def apply_unet_patches(self, p, unet, config, state):
        self.check(HIDIFFUSION, p)
        forge_objects = getattr(getattr(p, "sd_model", None), "forge_objects", None)
        patcher = getattr(forge_objects, "unet", None)
        if getattr(getattr(patcher, "model", None), "diffusion_model", None) is not unet:
            raise HostRefusal(f"{HIDIFFUSION} on {self.name}: the UNet this pass samples (sd_model.forge_objects.unet) "
                              "is not the checkpoint's UNet HiDiffusion patches (e.g. a compiled UNet); turn that "
                              "option off to use HiDiffusion.")
        found = bypasses(patcher, config)
        if found:
            raise HostRefusal(f"{HIDIFFUSION} on {self.name}: {'; '.join(found)} of another extension replaces what "
                              "HiDiffusion patches. Turn that extension off for this generation, or turn off the "
                              "HiDiffusion part named.")
        hidiffusion = lib("lib_hidiffusion")
        hidiffusion.apply(unet, config, state)
        if config.rau_net:
            wrap = lib("lib_hidiffusion.wrap")  # block forwards never run here: the block patches replace them
            wrap.uninstall(unet.input_blocks[config.blocks.pool_input])
            wrap.uninstall(unet.output_blocks[config.blocks.bicubic_output])
            self._blocks.install(forge_objects, config, state)

    def remove_unet_patches(self, unet):
        self._blocks.remove_all()
        lib("lib_hidiffusion").remove(unet)

    # --- IC-Light ------------------------------------------------------------------------------------------
    def supply_concat(self, p, for_latent):
        self.check(ICLIGHT, p)

    # --- CFG++ ---------------------------------------------------------------------------------------------
    def guided_sampler(self, function):
        host_name = self.name

        @functools.wraps(function)
        def sample(model, x, *args, **kwargs):
            denoiser = CfgppDenoiser(model, host_name)
            denoiser.check(kwargs.get("extra_args", args[1] if len(args) > 1 else None))
            return function(denoiser, x, *args, **kwargs)
        return sample

    def register_samplers(self, entries: Iterable):
        from modules import sd_samplers

        from .. import samplers as glue_samplers
        entries = list(entries)
        taken = set()
        for data in sd_samplers.all_samplers:
            if not getattr(data.constructor, "__module__", "").endswith("suite_glue.samplers"):  # the host's own
                taken.update(n.lower() for n in (data.name, *data.aliases))
        renamed = {e[0]: e[0] + LABEL_SUFFIX if e[0].lower() in taken else e[0] for e in entries}
        self._labels = dict(renamed)
        return glue_samplers.register_kdiffusion_samplers([_renamed(e, renamed, taken) for e in entries])

    def registered_label(self, label):
        return self._labels.get(label, label)


def _renamed(entry, renamed: dict, taken: set):
    values = list(entry)
    values[0] = renamed[values[0]]
    values[2] = [a for a in values[2] if a.lower() not in taken]
    if len(values) > 3 and values[3] in renamed:
        values[3] = renamed[values[3]]
    return type(entry)(*values) if hasattr(entry, "_fields") else tuple(values)
