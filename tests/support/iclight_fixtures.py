"""Test fixtures for the IC-Light core: diffusers twins of tiny ldm UNets, synthetic offset files,
state-dict hashes. Uses diffusers (tests only; the product never imports it)."""
from __future__ import annotations

import copy
import hashlib
import os

import torch
from safetensors.torch import save_file

from .tiny_models import make_unet, unet_kwargs


def original_config(family: str, in_channels: int = 4) -> dict:
    key = "network_config" if family == "sdxl" else "unet_config"
    return {"model": {"params": {key: {"params": unet_kwargs(family, in_channels)},
                                 "first_stage_config": {"params": {"ddconfig": {"ch_mult": [1, 2, 4, 4]}}}}}}


def to_diffusers_state_dict(ldm_state: dict, family: str = "sd15", in_channels: int = 4):
    """diffusers' own converter: (config, converted state dict) of an ldm UNet state dict."""
    from diffusers.loaders.single_file_utils import (convert_ldm_unet_checkpoint,
                                                     create_unet_diffusers_config_from_ldm)
    checkpoint = {"model.diffusion_model." + k: v for k, v in ldm_state.items()}
    config = create_unet_diffusers_config_from_ldm(original_config(family, in_channels), checkpoint)
    return config, convert_ldm_unet_checkpoint(checkpoint, config)


def diffusers_twin(ldm_unet, family: str = "sd15"):
    """A diffusers UNet2DConditionModel holding exactly the ldm UNet's weights (fp32, eval)."""
    from diffusers import UNet2DConditionModel
    config, state = to_diffusers_state_dict(ldm_unet.state_dict(), family, ldm_unet.in_channels)
    unet = UNet2DConditionModel(**config)
    unet.load_state_dict(state, strict=True)
    return unet.eval()


def random_offsets(diffusers_state: dict, in_channels: int, seed: int = 5, scale: float = 0.05) -> dict:
    """An offset for every key (diffusers names); conv_in widened to ``in_channels``."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(diffusers_state):
        shape = list(diffusers_state[key].shape)
        if key == "conv_in.weight":
            shape[1] = in_channels
        out[key] = (torch.randn(shape, generator=gen) * scale).contiguous()
    return out


_DIFFUSERS_SHAPES = {}


def _diffusers_shapes(family: str) -> dict:
    if family not in _DIFFUSERS_SHAPES:
        base = make_unet(family, seed=0)
        _, dstate = to_diffusers_state_dict(base.state_dict(), family)
        _DIFFUSERS_SHAPES[family] = {k: torch.empty(v.shape) for k, v in dstate.items()}
    return _DIFFUSERS_SHAPES[family]


def write_offset_file(folder: str, name: str, in_channels: int = 8, fmt: str = "diffusers", seed: int = 5,
                      family: str = "sd15", dtype=torch.float32) -> tuple:
    """Write a synthetic IC-Light offset file for the tiny ``family`` UNet. ``fmt``: 'diffusers', 'ldm'
    (bare ldm keys), 'diffusion_model' or 'model.diffusion_model' (prefixed ldm keys).
    Returns (path, offsets in diffusers names)."""
    offsets = random_offsets(_diffusers_shapes(family), in_channels, seed)
    tensors = offsets
    if fmt != "diffusers":
        from lib_iclight.keymap import diffusers_to_ldm
        mapping = diffusers_to_ldm(offsets.keys())
        prefix = "" if fmt == "ldm" else fmt + "."
        tensors = {prefix + mapping[k]: v for k, v in offsets.items()}
    path = os.path.join(folder, name)
    save_file({k: v.to(dtype) for k, v in tensors.items()}, path)
    return path, offsets


def demo_merge(diffusers_unet, offsets: dict):
    """Merge exactly as lllyasviel/IC-Light's gradio demos do: widen conv_in (new channels zero, base
    copied, bias shared), then ``sd_merged = origin + offset`` and a strict load."""
    unet = copy.deepcopy(diffusers_unet)
    in_channels = offsets["conv_in.weight"].shape[1]
    old = unet.conv_in
    with torch.no_grad():
        new = torch.nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding)
        new.weight.zero_()
        new.weight[:, :4, :, :].copy_(old.weight)
        new.bias = old.bias
        unet.conv_in = new
    origin = unet.state_dict()
    unet.load_state_dict({k: origin[k] + offsets[k] for k in origin}, strict=True)
    return unet


_BASES = {}


def base_unet(family: str = "sd15", seed: int = 0, in_channels: int = 4):
    """A fresh copy of a cached tiny ldm UNet (``make_unet`` is slow-ish; deepcopy is not)."""
    key = (family, seed, in_channels)
    if key not in _BASES:
        _BASES[key] = make_unet(family, seed=seed, in_channels=in_channels)
    return copy.deepcopy(_BASES[key])


def state_hash(module) -> str:
    """sha256 over every state-dict entry (name, dtype, shape, bytes), sorted by name."""
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        t = value.detach().cpu().contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def module_tree(module) -> list:
    """(name, class, object id) of every submodule plus each module's attribute names and hook counts."""
    rows = []
    for name, sub in module.named_modules():
        hooks = tuple(len(getattr(sub, h)) for h in ("_forward_hooks", "_forward_pre_hooks",
                                                      "_load_state_dict_pre_hooks", "_state_dict_hooks"))
        rows.append((name, type(sub).__name__, id(sub), tuple(sorted(sub.__dict__)), hooks))
    return rows
