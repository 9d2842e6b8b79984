"""Host double of modules.sd_models: checkpoints by title, loading and reloading weights as v1.10.1 does.

- `register_checkpoint(name, model)` (double only) stands in for a file in models/Stable-diffusion: it keeps the
  model's state dict, its config (family, UNet input channels) and a way to build a new model object.
- `reload_model_weights(sd_model=None, info=None)`: `info` defaults to `select_checkpoint()` (the checkpoint of
  `opts.sd_model_checkpoint`); nothing to do when it is already loaded (and FP8 storage did not change). Same config:
  `load_model_weights` into the loaded object (`load_state_dict(strict=False)`); another config: `load_model` builds
  a new object. Either way the model_loaded callbacks fire (script_callbacks.model_loaded_callback).
- `load_model_weights` ends with v1.10.1's FP8 step: when `check_fp8(model)` (Settings > Optimizations > FP8 weight,
  `opts.fp8_storage`: "Disable", "Enable for SDXL", "Enable"), every `Conv2d`/`Linear` outside the VAE is stored
  as `torch.float8_e4m3fn` and `devices.fp8` is set; inference then runs under `devices.autocast()`.
  v1.10.1 calls `model.half()` before loading into FP8 weights; this fp32 double converts them back to float32.
- `SkipWritingToConfig`: the refiner and the hires checkpoint load without changing `opts.sd_model_checkpoint`.
Tests that never register a checkpoint are untouched: `select_checkpoint()` is None and nothing reloads.
"""
from __future__ import annotations

import copy

import torch

from . import devices, script_callbacks, shared

checkpoints_list: dict = {}
checkpoint_aliases: dict = {}


class CheckpointInfo:
    def __init__(self, name: str, model):
        self.name = self.title = self.short_title = self.name_for_extra = self.model_name = name
        self.filename = f"{name}.safetensors"
        self.sha256 = self.shorthash = None
        self.state_dict = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.config = config_of(model)
        self._prototype = copy.deepcopy(model)

    def new_model(self):
        return copy.deepcopy(self._prototype)

    def calculate_shorthash(self):
        return None


def config_of(model) -> tuple:
    return model.family, model.model.diffusion_model.in_channels


def register_checkpoint(name: str, model) -> CheckpointInfo:
    info = CheckpointInfo(name, model)
    checkpoints_list[info.title] = info
    checkpoint_aliases[info.title] = checkpoint_aliases[info.filename] = info
    return info


def forget_checkpoints():
    checkpoints_list.clear()
    checkpoint_aliases.clear()


def get_closet_checkpoint_match(search_string):
    if not search_string:
        return None
    return checkpoint_aliases.get(search_string)


def select_checkpoint():
    return checkpoints_list.get(shared.opts.data.get("sd_model_checkpoint"))


class SkipWritingToConfig:
    skip = False

    def __enter__(self):
        self.previous, SkipWritingToConfig.skip = SkipWritingToConfig.skip, True
        return self

    def __exit__(self, *exc):
        SkipWritingToConfig.skip = self.previous


def check_fp8(model):
    if model is None:
        return None
    if shared.opts.data.get("fp8_storage", "Disable") == "Enable":
        return True
    return bool(getattr(model, "is_sdxl", False) and shared.opts.data.get("fp8_storage") == "Enable for SDXL")


def _fp8_modules(model):
    vae, model.first_stage_model = model.first_stage_model, None
    try:
        return [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    finally:
        model.first_stage_model = vae


def load_model_weights(model, checkpoint_info: CheckpointInfo, state_dict, timer=None):
    if devices.fp8:  # v1.10.1: model.half() so the state dict is not loaded into FP8 weights
        for module in _fp8_modules(model):
            module.to(torch.float32)
    if not SkipWritingToConfig.skip:
        shared.opts.data["sd_model_checkpoint"] = checkpoint_info.title
    model.load_state_dict(state_dict if state_dict is not None else checkpoint_info.state_dict, strict=False)
    if check_fp8(model):
        devices.fp8 = True
        for module in _fp8_modules(model):
            module.to(torch.float8_e4m3fn)
    else:
        devices.fp8 = False
    model.sd_model_checkpoint = checkpoint_info.filename
    model.sd_checkpoint_info = checkpoint_info


def load_model(checkpoint_info: CheckpointInfo = None, already_loaded_state_dict=None):
    checkpoint_info = checkpoint_info or select_checkpoint()
    model = checkpoint_info.new_model()
    model.used_config = checkpoint_info.config
    load_model_weights(model, checkpoint_info, already_loaded_state_dict)
    shared.sd_model = model
    script_callbacks.model_loaded_callback(model)
    return model


def reload_model_weights(sd_model=None, info=None, forced_reload=False):
    checkpoint_info = info or select_checkpoint()
    sd_model = sd_model or shared.sd_model
    if checkpoint_info is None:
        return sd_model
    if sd_model is not None:
        if check_fp8(sd_model) != devices.fp8:
            forced_reload = True
        elif getattr(sd_model, "sd_model_checkpoint", None) == checkpoint_info.filename and not forced_reload:
            return sd_model
    if sd_model is None or checkpoint_info.config != getattr(sd_model, "used_config", None):
        return load_model(checkpoint_info, already_loaded_state_dict=checkpoint_info.state_dict)
    load_model_weights(sd_model, checkpoint_info, checkpoint_info.state_dict)
    script_callbacks.model_loaded_callback(sd_model)
    shared.sd_model = sd_model
    return sd_model
