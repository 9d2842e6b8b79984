"""Load and run SDXL edit checkpoints (SDXL InstructPix2Pix, CosXL Edit) in WebUI v1.10.x.

Loading. v1.10.1 picks a checkpoint's config in `sd_models_config.find_checkpoint_config(state_dict, info)`
(called by `sd_models.load_model` and `reload_model_weights` through the module attribute): a `.yaml` next to the
file, else `guess_model_config_from_state_dict`, which knows SDXL only with 4 or 9 input channels and would build an
8-channel checkpoint as SDXL base (loading then fails on conv_in's shape). The WebUI has no hook for this, so
`install()` wraps that one function, narrowly: the wrapper classifies the state dict (`lib_concat.classify_checkpoint`:
key lookups and shapes only) and, for anything that is not an SDXL checkpoint with an 8-channel UNet, returns
exactly what the WebUI's own function returns for the same arguments (it calls it and nothing else). For SDXL edit
checkpoints it returns the user's `.yaml` next to the file if there is one, else the suite's `configs/` yaml of the
family, and remembers the family (and CosXL's EDM sigmas) by file name; an 8-channel SDXL checkpoint that fits no
edit family raises the core's ConcatError with what to do. Any unexpected error while classifying falls back to
the WebUI's choice.

Running (`setup(sd_model)`, from the model_loaded callback, which v1.10.1 fires after every load and reload): for a
model loaded from a remembered SDXL edit checkpoint whose UNet takes 8 channels,
- `cond_stage_key = "edit"`: what v1.10.1 keys InstructPix2Pix on (the CFG denoiser's 3-way batch and
  `combine_denoised_for_edit_model`, img2img keeping `image_cfg_scale`, the UI's "Image CFG Scale");
  `sd_models_xl.extend_sdxl` sets "txt" again on every weight load, and this runs after it;
- an instance `apply_model` that joins `c_concat` to x on the channels (fitted to x's rows and size,
  `lib_concat.rows.fit`) before the WebUI's `sd_models_xl.apply_model`, which joins it only for 9-channel inpainting;
- CosXL Edit: `create_denoiser` (v1.10.1 `CFGDenoiserKDiffusion.inner_model` uses it instead of CompVis(V)Denoiser)
  returning `lib_concat.EDMVDenoiser` with the checkpoint's sigmas.
`teardown(sd_model)` removes all of it (also run first by `setup`, so a reused model object never keeps another
checkpoint's setup). Any other model is left untouched.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

from .host.libs import lib

log = logging.getLogger("hdsuite")

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
CONFIG_FILES = {"sdxl_ip2p": "sd_xl_instruct_pix2pix.yaml", "cosxl_edit": "cosxl_edit.yaml"}
MARK = "hdsuite_edit_config_hook"
MODEL_ATTR = "hdsuite_edit"
_APPLY_MARK = "hdsuite_edit_apply_model"

_found: dict = {}  # checkpoint file name -> lib_concat.EditCheckpoint
_state = {"active": False}


def config_path(family_name: str) -> str:
    return os.path.join(CONFIG_DIR, CONFIG_FILES[family_name])


def found_for(filename: Optional[str]):
    """The remembered edit classification of a checkpoint file (None when not an SDXL edit checkpoint)."""
    return _found.get(filename)


def _classify(state_dict, info):
    concat = lib("lib_concat")
    name = os.path.basename(getattr(info, "filename", "") or "") or "This checkpoint"
    try:
        return concat.classify_checkpoint(state_dict, what=name)
    except concat.ConcatError:
        raise
    except Exception as error:  # never break a load the suite has nothing to do with
        log.warning("edit-model check of %s failed (%s); the WebUI's config choice is used", name, error)
        return None


def _wrap(original):
    def find_checkpoint_config(state_dict, info):
        if not _state["active"]:
            return original(state_dict, info)
        from modules import sd_models_config
        try:
            found = _classify(state_dict, info)
        except Exception:
            near = sd_models_config.find_checkpoint_config_near_filename(info)
            if near is not None:
                return near  # the user's own config for this file
            raise
        if found is None or found.family.base != "sdxl":
            return original(state_dict, info)
        _found[getattr(info, "filename", None)] = found
        return sd_models_config.find_checkpoint_config_near_filename(info) or config_path(found.family.name)

    setattr(find_checkpoint_config, MARK, True)
    find_checkpoint_config.__wrapped__ = original
    return find_checkpoint_config


def install() -> None:
    """Wrap `modules.sd_models_config.find_checkpoint_config` once (idempotent across script reloads)."""
    from modules import sd_models_config
    _state["active"] = True
    if not getattr(sd_models_config.find_checkpoint_config, MARK, False):
        sd_models_config.find_checkpoint_config = _wrap(sd_models_config.find_checkpoint_config)


def uninstall() -> None:
    """Take the wrapper off (or make it pass everything through if another extension wrapped it since)."""
    from modules import sd_models_config
    _state["active"] = False
    current = sd_models_config.find_checkpoint_config
    if getattr(current, MARK, False):
        sd_models_config.find_checkpoint_config = current.__wrapped__


# --- the loaded model ---------------------------------------------------------------------------------------------
def conv_in_channels(sd_model) -> Optional[int]:
    unet = getattr(getattr(sd_model, "model", None), "diffusion_model", None)
    try:
        return int(unet.input_blocks[0][0].weight.shape[1])
    except (AttributeError, IndexError, TypeError):
        return None


def _arm_apply_model(sd_model) -> None:
    fit = lib("lib_concat.rows").fit
    bound = sd_model.apply_model
    import torch

    def apply_model(x, t, cond, *args, **kwargs):
        concat = cond.get("c_concat") if isinstance(cond, dict) else None
        if concat:
            x = torch.cat([x] + [fit(c, x).to(x) for c in concat], dim=1)
        return bound(x, t, cond, *args, **kwargs)

    setattr(apply_model, _APPLY_MARK, True)
    sd_model.apply_model = apply_model


def teardown(sd_model) -> None:
    """Remove what `setup` put on `sd_model` (nothing happens to a model it never set up)."""
    if sd_model is None:
        return
    attrs = sd_model.__dict__
    if getattr(attrs.get("apply_model"), _APPLY_MARK, False):
        del attrs["apply_model"]
    if getattr(attrs.get("create_denoiser"), _APPLY_MARK, False):
        del attrs["create_denoiser"]
    if attrs.pop(MODEL_ATTR, None) is not None and getattr(sd_model, "cond_stage_key", None) == "edit":
        sd_model.cond_stage_key = "txt"  # what sd_models_xl.extend_sdxl sets for every SDXL model


def setup(sd_model):
    """Make a model loaded from an SDXL edit checkpoint run as one (module doc); returns its EditCheckpoint or None."""
    teardown(sd_model)
    info = getattr(sd_model, "sd_checkpoint_info", None)
    found = found_for(getattr(info, "filename", None))
    if found is None or not getattr(sd_model, "is_sdxl", False) or conv_in_channels(sd_model) != 8:
        return None
    sd_model.cond_stage_key = "edit"
    _arm_apply_model(sd_model)
    if found.family.schedule == "edm_v":
        denoiser_class = lib("lib_concat.edm").EDMVDenoiser

        def create_denoiser():
            return denoiser_class(sd_model, found.sigma_min, found.sigma_max, found.sigma_data)

        setattr(create_denoiser, _APPLY_MARK, True)
        sd_model.create_denoiser = create_denoiser
    setattr(sd_model, MODEL_ATTR, found)
    return found
