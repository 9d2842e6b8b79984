"""Turn the A1111 double into the Forge-family double for one test (`ForgeDouble(monkeypatch)`, `close()`).

What changes (each as reForge has it):
- `modules_forge` (with `forge_version.version`, reForge's "1.0.0v2-v1.10.1RC" unless given) and `ldm_patched` are
  importable: how suite_glue.host.detect tells the host; the suite's detection is forgotten on install and close.
- the current model (`shared.sd_model`): its UNet gets ldm_patched's call structure (ldm_patched_unet), and it gets
  `forge_objects` / `forge_objects_original` / `forge_objects_after_applying_lora` holding one `UnetPatcher` over a
  `BaseModel` of that UNet (modules_forge/forge_loader.load_model_for_a1111: `sd_model.model.diffusion_model` is
  `forge_objects.unet.model.diffusion_model`);
- `sd_model.forge_objects` is set to `forge_objects_after_applying_lora.shallow_copy()` right before every
  `process_before_every_sampling` (modules/processing.py: Txt2Img.sample, sample_hr_pass, Img2Img.sample; reForge
  does it with or without scripts, the double in the script runner's hook: `reset_forge_objects()` otherwise);
- `CFGDenoiser.forward` is reForge's (cfg_denoiser);
- the sampler table gets reForge's CFG++-related entries (native_samplers.TABLE), built as its AlterSampler does
  (a KDiffusionSampler over the function).
`close()` undoes the monkeypatches, rebuilds the sampler lists and gives the UNet its ldm classes back.
"""
from __future__ import annotations

import importlib.machinery
import sys
import types

from .cfg_denoiser import forward as forge_forward
from .ldm_patched_unet import to_ldm, to_ldm_patched
from .model_patcher import ForgeObjects, UnetPatcher
from .native_samplers import TABLE
from .sampling import BaseModel

REFORGE_VERSION = "1.0.0v2-v1.10.1RC"


def _package(name):
    module = types.ModuleType(name)
    module.__path__ = []
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    return module


def glue_host():
    from hdsuite_imports import suite_import
    return suite_import("suite_glue.host")


class ForgeDouble:
    def __init__(self, monkeypatch, version: str = REFORGE_VERSION, backend: bool = False):
        """`backend=True`: the package layout of Forge 2.x / Forge Neo (`backend` instead of `ldm_patched`), for
        the refusals there; the sampling contract stays reForge's."""
        from modules import scripts, sd_samplers, sd_samplers_cfg_denoiser, sd_samplers_common, sd_samplers_kdiffusion
        from modules import shared
        from support.tiny_models import make_denoiser

        self.monkeypatch = monkeypatch
        forge, model_code, forge_version = _package("modules_forge"), _package(
            "backend" if backend else "ldm_patched"), _package("modules_forge.forge_version")
        forge_version.version = version
        forge.forge_version = forge_version
        for module in (forge, model_code, forge_version):
            monkeypatch.setitem(sys.modules, module.__name__, module)

        self.model = model = shared.sd_model
        self.unet = to_ldm_patched(model.model.diffusion_model)
        self.patcher = UnetPatcher(BaseModel(self.unet, make_denoiser(model)))
        model.forge_objects = ForgeObjects(self.patcher)
        model.forge_objects_original = model.forge_objects.shallow_copy()
        model.forge_objects_after_applying_lora = model.forge_objects.shallow_copy()

        monkeypatch.setattr(sd_samplers_cfg_denoiser.CFGDenoiser, "forward", forge_forward)
        before_sampling = scripts.ScriptRunner.process_before_every_sampling

        def process_before_every_sampling(runner, p, **kwargs):
            shared.sd_model.forge_objects = shared.sd_model.forge_objects_after_applying_lora.shallow_copy()
            return before_sampling(runner, p, **kwargs)
        monkeypatch.setattr(scripts.ScriptRunner, "process_before_every_sampling", process_before_every_sampling)

        native = [sd_samplers_common.SamplerData(
            label, lambda m, f=function: sd_samplers_kdiffusion.KDiffusionSampler(f, m), list(aliases), {})
            for label, function, aliases in TABLE]
        monkeypatch.setattr(sd_samplers_kdiffusion, "sampler_extra_params",
                            dict(sd_samplers_kdiffusion.sampler_extra_params))
        monkeypatch.setattr(sd_samplers, "all_samplers", [*sd_samplers.all_samplers, *native])
        monkeypatch.setattr(sd_samplers, "all_samplers_map", {x.name: x for x in sd_samplers.all_samplers})
        self.native = {data.name: data for data in native}
        sd_samplers.set_samplers()
        sd_samplers.get_sampler_and_scheduler.cache_clear()
        glue_host().forget()

    def reset_forge_objects(self):
        """What processing does before each pass (for tests that sample without scripts)."""
        self.model.forge_objects = self.model.forge_objects_after_applying_lora.shallow_copy()

    def close(self):
        from modules import sd_samplers
        self.monkeypatch.undo()
        to_ldm(self.unet)
        for name in ("forge_objects", "forge_objects_original", "forge_objects_after_applying_lora"):
            self.model.__dict__.pop(name, None)
        sd_samplers.set_samplers()
        sd_samplers.get_sampler_and_scheduler.cache_clear()
        glue_host().forget()
