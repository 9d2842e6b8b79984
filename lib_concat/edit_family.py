"""InstructPix2Pix-style edit models (latent + input-image latent = 8 input channels): families and how a full
checkpoint (ldm / sgm key names) tells which one it is — from its shapes and keys, never its file name.

==============  =================================================  ================  ==========================
family          checkpoint                                         schedule          image latent
==============  =================================================  ================  ==========================
``sd15_ip2p``   SD 1.x text encoder (context 768), 8-channel UNet  discrete ε         VAE mode, unscaled
``sdxl_ip2p``   SDXL (``conditioner.embedders.1``), 8 channels,    discrete ε         VAE mode, unscaled
                no schedule keys
``cosxl_edit``  as sdxl_ip2p plus ``edm_vpred.sigma_min`` and      EDM v-prediction   VAE mode × scale factor
                ``edm_vpred.sigma_max`` (CosXL Edit)               (σ from the keys)
==============  =================================================  ================  ==========================

The image-latent column follows diffusers (0.29): ``StableDiffusionInstructPix2PixPipeline`` and
``StableDiffusionXLInstructPix2PixPipeline`` condition on the unscaled mode, and multiply it by the VAE's
``scaling_factor`` only with ``is_cosxl_edit=True``. The WebUI v1.10.1 runs ``sd15_ip2p`` itself
(``configs/instruct-pix2pix.yaml``); the SDXL families need the suite's configs.

An SDXL checkpoint with an 8-channel UNet that fits neither SDXL family (another layout, or schedule keys such as
``edm_mean`` / ``v_pred`` / ``ztsnr`` or only one of the two EDM keys) is refused with :class:`ConcatError`.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Optional

from .detect import detect_model_kind
from .edm import COSXL_SIGMA_DATA, COSXL_SIGMA_MAX, COSXL_SIGMA_MIN
from .errors import ConcatError

UNET_PREFIX = "model.diffusion_model."
CONV_IN = UNET_PREFIX + "input_blocks.0.0.weight"
CONV_OUT = UNET_PREFIX + "out.2.weight"
SDXL_BASE_MARKER = "conditioner.embedders.1.model.ln_final.weight"  # as v1.10.1 sd_models_config picks SDXL
SDXL_REFINER_MARKER = "conditioner.embedders.0.model.ln_final.weight"
SD1_MARKER = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
EDM_KEYS = ("edm_vpred.sigma_min", "edm_vpred.sigma_max")
OTHER_SCHEDULE_KEYS = ("edm_mean", "edm_std", "v_pred", "ztsnr")


@dataclasses.dataclass(frozen=True)
class EditFamily:
    name: str
    label: str
    base: str  # 'sd15' | 'sdxl'
    schedule: str  # 'discrete' | 'edm_v'
    scale_image_latent: bool


SD15_IP2P = EditFamily("sd15_ip2p", "InstructPix2Pix (SD 1.5)", "sd15", "discrete", False)
SDXL_IP2P = EditFamily("sdxl_ip2p", "InstructPix2Pix (SDXL)", "sdxl", "discrete", False)
COSXL_EDIT = EditFamily("cosxl_edit", "CosXL Edit", "sdxl", "edm_v", True)
FAMILIES = {f.name: f for f in (SD15_IP2P, SDXL_IP2P, COSXL_EDIT)}


@dataclasses.dataclass(frozen=True)
class EditCheckpoint:
    """What :func:`classify_checkpoint` found. σ values only for the EDM family."""
    family: EditFamily
    reason: str
    sigma_min: Optional[float] = None
    sigma_max: Optional[float] = None
    sigma_data: Optional[float] = None


def _shape(value):
    return tuple(int(s) for s in getattr(value, "shape", value))


def _scalar(value) -> Optional[float]:
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError, NotImplementedError):  # e.g. a tensor on the meta device
        return None


def _edm_sigmas(state_dict: Mapping, what: str):
    lo, hi = (_scalar(state_dict[k]) for k in EDM_KEYS)
    if lo is None or hi is None:
        return COSXL_SIGMA_MIN, COSXL_SIGMA_MAX, "EDM keys present (values unreadable: the CosXL model card's used)"
    if not 0 < lo < hi:
        raise ConcatError(f"{what}: its edm_vpred.sigma_min / sigma_max are {lo} / {hi}; they must satisfy "
                          "0 < sigma_min < sigma_max. The file is damaged; download it again.")
    return lo, hi, f"edm_vpred.sigma_min {lo:g}, sigma_max {hi:g}"


def classify_checkpoint(state_dict: Mapping, what: str = "This checkpoint") -> Optional[EditCheckpoint]:
    """The edit family of a full checkpoint's state dict (values may be tensors, meta tensors or shapes), or None
    when it has no 8-channel UNet (or is a base the suite has no edit family for). ``what`` names the checkpoint
    in errors. Raises :class:`ConcatError` for an 8-channel SDXL checkpoint that fits no SDXL edit family."""
    conv = state_dict.get(CONV_IN)
    if conv is None or len(_shape(conv)) != 4 or _shape(conv)[1] != 8:
        return None
    sdxl = SDXL_BASE_MARKER in state_dict or SDXL_REFINER_MARKER in state_dict
    if not sdxl:
        if SD1_MARKER in state_dict and detect_model_kind(state_dict).base_family == "sd15":
            return EditCheckpoint(SD15_IP2P, "SD 1.x text encoder and an 8-channel UNet (the WebUI's own ip2p)")
        return None
    unet = detect_model_kind(state_dict)
    problems = []
    if SDXL_BASE_MARKER not in state_dict:
        problems.append("it has the SDXL refiner's text encoder only")
    if unet.context_dim != 2048:
        problems.append(f"its cross-attention context is {unet.context_dim} wide (SDXL: 2048)")
    if CONV_OUT not in state_dict or _shape(state_dict[CONV_OUT])[0] != 4:
        problems.append("its UNet does not output 4 latent channels")
    edm = [k for k in EDM_KEYS if k in state_dict]
    other = [k for k in OTHER_SCHEDULE_KEYS if k in state_dict]
    if other or len(edm) == 1:
        problems.append(f"it carries schedule keys of no known edit model ({', '.join(other + edm)})")
    if problems:
        raise ConcatError(f"{what} is an SDXL checkpoint with an 8-channel UNet, but its keys match no known edit "
                          f"family: {'; '.join(problems)}. Supported: SDXL InstructPix2Pix and CosXL Edit "
                          f"(edm_vpred.sigma_min / sigma_max keys). If it is another model, put a config .yaml "
                          f"with the checkpoint's name next to it.")
    if edm:
        lo, hi, why = _edm_sigmas(state_dict, what)
        return EditCheckpoint(COSXL_EDIT, f"SDXL, 8-channel UNet, {why}", lo, hi, COSXL_SIGMA_DATA)
    return EditCheckpoint(SDXL_IP2P, "SDXL, 8-channel UNet, no schedule keys (discrete ε schedule)")
