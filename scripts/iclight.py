"""IC-Light relighting (fc / fbc offset files) in txt2img and img2img: accordion, API, X/Y/Z, infotext.

Adapter only: file handling, merging, conditioning, light ramps and detail restore live in lib_iclight.
Hooks, per generation:
- before_process: off -> restore any merge (heals a merge left by an earlier run; off is bit-identical to
  never using IC-Light). On -> resolve and validate everything (file, its kind vs the chosen mode, foregrounds,
  background; no hires checkpoint switch, refiner or FP8 weights) without touching the model; any problem stops
  the generation before sampling (fail_generation).
- process: merge (once per file/checkpoint; no re-merge while intact) and install the concat provider as this
  `p`'s txt2img / img2img image conditioning: every sampling pass (hires included) gets the concat at its size.
- process_before_every_sampling: fc lighting preference (img2img only, first pass): the demo's light ramp
  replaces the initial latent; the img2img denoising strength plays the demo's "denoise" (0.9 there).
- postprocess_image: optional detail restore from the prepared foreground.
While a merge is alive the model's apply_model fits c_concat to the x that reaches the UNet (suite_glue.concat_rows:
NGMS / skip early CFG drop the uncond rows of x only; hires "Resize width/height to" crops x after the concat was
built); the wrapper goes with the merge's restore. The built-in LoRA extension's backups are kept consistent
with the merge (suite_glue.lora).

API (`alwayson_scripts: {"IC-Light": {"args": [...]}}`): positional values in field order, or one dict keyed
by field name. Images are base64 strings (data URLs accepted); `foreground` (and `mask`) may also be a list:
one per image of the batch (batch_size entries; the same list for every batch of n_iter).
Lighting preference in txt2img: the WebUI's txt2img always starts from pure noise, so the light ramp (an
initial image) needs img2img; in txt2img a lighting preference other than None is refused with that advice.
"""
import dataclasses
import os
from typing import Optional

import numpy as np
from PIL import Image

from modules import devices, paths, script_callbacks, shared

from hdsuite_imports import suite_import

iclight = suite_import("lib_iclight")
preferred_model_file = suite_import("lib_iclight.default_model").preferred_model_file
glue_params = suite_import("suite_glue.params")
glue_script_base = suite_import("suite_glue.script_base")
glue_xyz = suite_import("suite_glue.xyz")
glue_fields_route = suite_import("suite_glue.fields_route")
glue_infotext = suite_import("suite_glue.infotext")
glue_failure = suite_import("suite_glue.failure")
glue_lora = suite_import("suite_glue.lora")
glue_concat_rows = suite_import("suite_glue.concat_rows")
glue_host = suite_import("suite_glue.host")  # the WebUI family: refusals, how a concat reaches each pass
as_list = suite_import("suite_glue.images").as_list
param = glue_params.param

TITLE = "IC-Light"
RUN_ATTR = "iclight_run"
REMOVERS = {"rembg": "auto", "none": None}


def model_folder() -> str:
    """`--iclight-dir`, else `<models>/ic-light`."""
    return getattr(shared.cmd_opts, "iclight_dir", None) or os.path.join(paths.models_path, "ic-light")


def model_choices() -> list:
    return iclight.list_model_files(model_folder())


def default_model() -> str:
    """An fc file when one exists (see lib_iclight.default_model), else "" (then enabling says what to download)."""
    return preferred_model_file(model_folder()) or ""


@dataclasses.dataclass(frozen=True)
class ICLightArgs:
    enabled: bool = param(False, "Enable")
    model: str = param("", "Model file", choices=model_choices, default_from=default_model, infotext="model", xyz=True,
                       info="iclight_sd15_fc / fcon / fbc .safetensors in models/ic-light (or --iclight-dir)")
    mode: str = param("auto", "Mode", choices=("auto", "fc", "fbc"), infotext="mode", ui="radio",
                      info="auto: from the file (fc = foreground, fbc = foreground + background)")
    foreground: object = param(None, "Foreground", kind="image")
    mask: object = param(None, "Foreground mask (optional; white = keep)", kind="image")
    remover: str = param("rembg", "Background removal", choices=tuple(REMOVERS), infotext="remover", ui="radio",
                         info="used when the foreground has no transparency and no mask: rembg, or none (whole image)")
    bg_source: str = param(iclight.FBC_SOURCES[iclight.FBC_DEFAULT], "Background source (fbc)",
                           choices=tuple(iclight.FBC_SOURCES.values()), infotext="background", xyz=True)
    background: object = param(None, "Background image (fbc)", kind="image")
    lighting: str = param(iclight.FC_LIGHTS["none"], "Lighting preference (fc, img2img)",
                          choices=tuple(iclight.FC_LIGHTS.values()), infotext="lighting", xyz=True,
                          info="initial light image as in the demo; use denoising strength ~0.9")
    detail_restore: bool = param(False, "Restore detail", infotext="detail restore", xyz=True)
    detail_radius: int = param(5, "Detail blur radius (odd)", minimum=1, maximum=31, step=2,
                               infotext="detail radius", xyz=True)


SPEC = glue_params.ParamSpec(ICLightArgs, title=TITLE, infotext_prefix=TITLE)


@dataclasses.dataclass
class Run:
    """What before_process resolved for one generation (stored on `p`)."""
    values: ICLightArgs  # `mode` is the file's kind
    offset: object
    spec: object
    img2img: bool
    provider: Optional[object] = None


def after_restore(unet) -> None:
    glue_lora.forget(unet)
    glue_concat_rows.disarm(TITLE)


MERGER = iclight.Merger(before_merge=glue_lora.unapply, after_restore=after_restore)


# --- hooks ---------------------------------------------------------------------------------------------------
def _encoder(p):
    return lambda x: p.sd_model.encode_first_stage(x.to(devices.device, devices.dtype_vae))


def _unet(model):
    inner = getattr(model, "model", None)
    return getattr(inner, "diffusion_model", None)


FP8_ERROR = (f"{TITLE} cannot merge into weights stored as FP8: set Settings > Optimizations > FP8 weight to "
             "'Disable' (or 'Enable for SDXL'; and no fp8_storage in override_settings), then generate again.")


def fp8_storage(p) -> bool:
    """Whether this generation's weights will be FP8: the FP8 weight setting as the WebUI will apply it (the API's
    override_settings are applied, and the weights reloaded, only after before_process). Weights found FP8 at merge
    time are refused in `process`."""
    current = getattr(shared.opts, "fp8_storage", None)
    setting = (getattr(p, "override_settings", None) or {}).get("fp8_storage", current)
    return setting == "Enable" or (setting == "Enable for SDXL" and getattr(p.sd_model, "is_sdxl", False))


def refuse_weight_changes(p) -> None:
    """The merge lives in the loaded weights: refuse what would reload them during the generation (a hires-fix
    checkpoint, the refiner: v1.10.1 apply_refiner reloads mid-sampling) or store them as FP8."""
    hr_checkpoint = getattr(p, "hr_checkpoint_name", None) if getattr(p, "enable_hr", False) else None
    if hr_checkpoint and hr_checkpoint != "Use same checkpoint":
        raise iclight.ICLightError(f"{TITLE}: hires fix would switch to the checkpoint '{hr_checkpoint}', which "
                                   "reloads the model without IC-Light for the second pass. Set the hires checkpoint "
                                   "to 'Use same checkpoint', or turn hires fix off.")
    refiner, switch_at = getattr(p, "refiner_checkpoint", None), getattr(p, "refiner_switch_at", None)
    if refiner not in (None, "", "None", "none") and (switch_at is None or switch_at < 1):  # 1: never switches
        raise iclight.ICLightError(f"{TITLE}: the refiner ('{refiner}') reloads the model's weights in the middle of "
                                   "sampling, which drops IC-Light's merge: the remaining steps would run without "
                                   "IC-Light. Turn the refiner off (or leave its checkpoint empty) to use IC-Light.")
    if fp8_storage(p):
        raise iclight.ICLightError(FP8_ERROR)


def resolve(p, values: ICLightArgs, img2img: bool) -> Run:
    """Everything checked before the model is touched; raises ICLightError / ParamError naming the fix."""
    foregrounds = as_list(values.foreground) or [None]  # None -> the core's 'needs a foreground'
    masks = as_list(values.mask)
    background = values.background
    lighting = iclight.parse_fc_light(values.lighting)
    if lighting != "none" and not img2img:
        raise iclight.ICLightError(f"{TITLE}: the lighting preference '{values.lighting}' is an initial image, "
                                   "which needs img2img: use the img2img tab (any input image, denoising strength "
                                   "~0.9) or set the lighting preference to None.")
    refuse_weight_changes(p)
    if values.detail_restore and values.detail_radius % 2 == 0:
        raise glue_params.ParamError(f"{TITLE}: argument 'detail_radius' must be odd, got {values.detail_radius}")
    model_field = f"{TITLE}: argument 'model' ({SPEC.by_name['model'].label})"
    offset = MERGER.open(iclight.resolve_model_path(values.model, model_folder(), where=model_field))
    if values.mode != "auto" and values.mode != offset.kind:
        raise iclight.ICLightError(
            f"{TITLE}: mode '{values.mode}' was chosen but {os.path.basename(offset.path)} is an {offset.kind} model "
            f"(its first convolution takes {offset.in_channels} channels). Pick an {values.mode} file "
            f"(iclight_sd15_{'fc' if values.mode == 'fc' else 'fbc'}) or set the mode to auto.")
    if offset.kind == "fbc" and lighting != "none":
        raise iclight.ICLightError(f"{TITLE}: the lighting preference is for fc models; with {offset.kind} the light "
                                   "comes from the background source. Set the lighting preference to None.")
    if len(foregrounds) not in (1, p.batch_size):
        raise iclight.ICLightError(f"{TITLE} got {len(foregrounds)} foregrounds for a batch of {p.batch_size} "
                                   "images; give one foreground, or one per image of the batch.")
    if len(masks) not in (0, 1, len(foregrounds)):
        raise iclight.ICLightError(f"{TITLE} got {len(masks)} masks for {len(foregrounds)} foregrounds; "
                                   "give one mask, or one per foreground.")
    remover = REMOVERS[values.remover]
    prepared = [iclight.prepare_foreground(fg, masks[i % len(masks)] if masks else None, remover)
                for i, fg in enumerate(foregrounds)]
    spec = iclight.make_concat_spec(offset.kind, prepared, p.width, p.height, values.bg_source, background)
    return Run(values=dataclasses.replace(values, mode=offset.kind), offset=offset, spec=spec, img2img=img2img)


class ICLightScript(glue_script_base.spec_script(SPEC)):
    def before_process(self, p, *args):
        setattr(p, RUN_ATTR, None)
        try:
            values = SPEC.parse(args, p)
            if not values.enabled:
                MERGER.restore()
                return
            glue_host.current().check(glue_host.ICLIGHT, p)  # before the model is touched
            setattr(p, RUN_ATTR, resolve(p, values, img2img=hasattr(p, "init_images")))
        except Exception as error:
            glue_failure.fail_generation(p, error)

    def process(self, p, *args):
        run = getattr(p, RUN_ATTR, None)
        if run is None:
            return
        try:
            unet = _unet(p.sd_model)
            if unet is not None and iclight.uses_float8(unet):
                raise iclight.ICLightError(FP8_ERROR)
            if unet is not None:
                glue_lora.unapply(unet)
            MERGER.ensure(p.sd_model, run.offset)
            glue_concat_rows.arm(p.sd_model, TITLE)
        except Exception as error:
            setattr(p, RUN_ATTR, None)
            glue_failure.fail_generation(p, error)
            return
        provider = run.provider = iclight.ConcatProvider(run.spec, _encoder(p), p.sd_model.scale_factor)
        glue_host.current().supply_concat(p, provider.for_latent)
        glue_infotext.add_infotext(p, SPEC.infotext(run.values))

    def process_before_every_sampling(self, p, *args, **kwargs):
        run = getattr(p, RUN_ATTR, None)
        if run is None or not run.img2img or p.is_hr_pass or getattr(p, "init_latent", None) is None:
            return
        try:
            latent = iclight.fc_initial_latent(run.values.lighting, p.width, p.height, _encoder(p),
                                               p.sd_model.scale_factor)
            if latent is not None:
                p.init_latent = iclight.match_batch(latent, p.init_latent.shape[0]).to(p.init_latent)
        except Exception as error:
            glue_failure.fail_generation(p, error)

    def postprocess_image(self, p, pp, *args):
        run = getattr(p, RUN_ATTR, None)
        if run is None or not run.values.detail_restore:
            return
        foregrounds = run.spec.foregrounds
        original = foregrounds[getattr(p, "batch_index", 0) % len(foregrounds)]
        restored = iclight.restore_detail(np.array(pp.image.convert("RGB")), original, run.values.detail_radius)
        pp.image = Image.fromarray(restored)


def on_model_loaded(sd_model):
    MERGER.restore()


def on_script_unloaded():
    iclight.restore_all()


def register_axes():
    return glue_xyz.register_axes(SPEC)


# Scripts are executed again on "Reload UI": drop this file's earlier callbacks, then register once.
script_callbacks.remove_current_script_callbacks()
script_callbacks.on_model_loaded(on_model_loaded, name="IC-Light restore")
script_callbacks.on_script_unloaded(on_script_unloaded, name="IC-Light restore all")
# the X/Y/Z plot loads after this file (metadata.ini "Before"); before_ui fires once every script is loaded
script_callbacks.on_before_ui(register_axes, name="IC-Light X/Y/Z axes")
glue_fields_route.publish(SPEC, lambda: {"folder": model_folder(), "files": model_choices()})
script_callbacks.on_app_started(glue_fields_route.add_route, name="IC-Light fields route")
