"""Check that an offset file fits the loaded UNet before anything is changed (SD 1.5 shapes, no FP8 weights)."""
from __future__ import annotations

from typing import Dict, Tuple

from torch import nn

from .detect import detect_model_kind
from .errors import ICLightError
from .model_file import CONV_IN, DOWNLOAD_FROM, OffsetFile

FAMILY_NAMES = {"sd15": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL", "sdxl_refiner": "SDXL refiner"}


def is_float8(dtype) -> bool:
    """True for torch's 8-bit float dtypes (float8_e4m3fn, float8_e5m2, ...)."""
    return str(dtype).startswith("torch.float8")


def uses_float8(module: nn.Module) -> bool:
    return any(is_float8(t.dtype) for t in module.state_dict(keep_vars=True).values())


def find_unet(model: nn.Module) -> Tuple[nn.Module, object]:
    """(ldm UNet, DiffusionWrapper or None) from an ldm LatentDiffusion, a DiffusionWrapper or a bare UNet."""
    inner = getattr(model, "model", None)
    if inner is not None and hasattr(inner, "diffusion_model"):
        return inner.diffusion_model, inner
    if hasattr(model, "diffusion_model"):
        return model.diffusion_model, model
    if hasattr(model, "input_blocks"):
        return model, None
    raise ICLightError(f"IC-Light cannot find an SD UNet (model.diffusion_model) in {type(model).__name__}; "
                       "it works with SD 1.5-family checkpoints only.")


def _few(keys, n=4):
    keys = sorted(keys)
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def check_compatible(unet: nn.Module, offset: OffsetFile) -> Dict[str, nn.Parameter]:
    """Raise :class:`ICLightError` unless ``offset`` applies to ``unet``; return the UNet's tensors by ldm key.

    Requires: a plain (4-channel) SD 1.x UNet with context 768 and no FP8 weights, every file key present in the
    UNet and the other way round, equal shapes except the widened input channels of the first conv."""
    tensors = unet.state_dict(keep_vars=True)
    fp8 = sorted({str(v.dtype).replace("torch.", "") for v in tensors.values() if is_float8(v.dtype)})
    if fp8:
        raise ICLightError(f"The loaded UNet stores its weights as {', '.join(fp8)} (FP8): IC-Light's offsets cannot "
                           "be added to FP8 weights (they are finer than FP8's precision). Load it in fp16/fp32.")
    kind = detect_model_kind({k: v.shape for k, v in tensors.items()})
    family = FAMILY_NAMES.get(kind.base_family, "an unrecognised model")
    if kind.context_dim != 768:
        raise ICLightError(f"IC-Light needs an SD 1.5-family checkpoint, but the loaded one is {family} "
                           f"(text context width {kind.context_dim}, SD 1.5 has 768). Load an SD 1.5 checkpoint.")
    if kind.in_channels != 4:
        raise ICLightError(f"IC-Light applies to a plain SD 1.5 checkpoint; the loaded UNet takes {kind.in_channels} "
                           f"input channels ({kind.kind}). Load a regular (non-inpainting, non-edit) SD 1.5 checkpoint.")
    missing = set(tensors) - set(offset.keys)
    extra = set(offset.keys) - set(tensors)
    if extra:
        raise ICLightError(f"{offset.path} does not match the loaded UNet: {len(extra)} of its keys are not in "
                           f"the model, e.g. {_few(offset.keys[k] for k in extra)}. It is not an SD 1.5 IC-Light "
                           f"offset file; use the files from {DOWNLOAD_FROM}.")
    if missing:
        raise ICLightError(f"{offset.path} does not match the loaded UNet: it lacks {len(missing)} of the model's "
                           f"keys, e.g. {_few(missing)}. The file is incomplete; download it again from {DOWNLOAD_FROM}.")
    conv_w = CONV_IN + ".weight"
    bad = []
    for key, value in tensors.items():
        want, got = tuple(value.shape), offset.shapes[key]
        if key == conv_w:
            ok = len(got) == 4 and got[0] == want[0] and got[2:] == want[2:] and got[1] > want[1]
        else:
            ok = got == want
        if not ok:
            bad.append(f"{offset.keys[key]} {list(got)} vs model {list(want)}")
    if bad:
        raise ICLightError(f"{offset.path} does not fit the loaded UNet ({len(bad)} shape mismatches, e.g. "
                           f"{'; '.join(bad[:3])}). It was made for another architecture; IC-Light needs SD 1.5.")
    return tensors
