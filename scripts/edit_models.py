"""Edit models (InstructPix2Pix-style: SD 1.5 ip2p, SDXL ip2p, CosXL Edit) in txt2img and img2img: accordion,
API, X/Y/Z, infotext.

Adapter only: families, the EDM denoiser, the image latent and the guidance rule live in lib_concat; loading SDXL
edit checkpoints (config choice, model setup) in suite_glue.edit_checkpoints.

Which model runs how:
- SD 1.5 InstructPix2Pix: the WebUI's own (img2img, its "Image CFG Scale"); this feature adds an input image in
  txt2img (and in img2img one that replaces the init image as the edit source). Disabled: untouched.
- SDXL InstructPix2Pix and CosXL Edit: loadable because of the suite (suite_glue.edit_checkpoints). Once loaded they
  run like SD 1.5 ip2p in the WebUI, whether the accordion is on or not: img2img edits the init image with the
  WebUI's "Image CFG Scale" (UI, API `image_cfg_scale`, its X/Y/Z axis); txt2img needs the accordion's image.
  Without the suite these checkpoints do not load at all, so there is no "without the extension" to be equal to.
The accordion's image CFG scale is for txt2img (the WebUI has that setting in img2img only). Batches: one image,
or one per image of the batch. The 8-channel ambiguity (InstructPix2Pix or IC-Light fc) is decided by the user's
choice of feature: an 8-channel SD 1.5 checkpoint is an edit model here; IC-Light merges its own fc weights into a
plain 4-channel checkpoint and refuses any other, so the two never run together.

Hooks, per generation:
- before_process: resolve and check everything that does not depend on override_settings (host, model, images and
  their sizes, refiner, hires checkpoint); nothing is changed. Problems stop the generation before sampling
  (fail_generation).
- process: refuse what override_settings may have changed (Skip early CFG); install the concat provider as this
  `p`'s image conditioning (host.supply_concat; every pass, hires included, at its size) and the txt2img image CFG
  scale (`p.image_cfg_scale`, which the sampler hands to the CFG denoiser); keep an SD 1.5 model's c_concat fitted
  to x (suite_glue.concat_rows) until `p` closes; write the infotext.
- process_before_every_sampling: CosXL Edit runs on its EDM denoiser, which only the k-diffusion samplers use:
  another sampler (DDIM, PLMS, UniPC, LCM, ...) is refused. txt2img gives the CFG denoiser the zero latent its
  3-way batch takes the "no image" rows from (v1.10.1 uses `zeros_like(init_latent)`, which txt2img never sets).
"""
import dataclasses
from typing import Optional

import torch

from modules import script_callbacks, shared

from hdsuite_imports import suite_import

concat = suite_import("lib_concat")
glue_params = suite_import("suite_glue.params")
glue_script_base = suite_import("suite_glue.script_base")
glue_xyz = suite_import("suite_glue.xyz")
glue_fields_route = suite_import("suite_glue.fields_route")
glue_infotext = suite_import("suite_glue.infotext")
glue_failure = suite_import("suite_glue.failure")
glue_lifecycle = suite_import("suite_glue.lifecycle")
glue_concat_rows = suite_import("suite_glue.concat_rows")
glue_host = suite_import("suite_glue.host")
glue_edit = suite_import("suite_glue.edit_checkpoints")
as_list = suite_import("suite_glue.images").as_list
param = glue_params.param

TITLE = "Edit model"
RUN_ATTR = "edit_model_run"
FAMILY_KEY = f"{TITLE} family"


@dataclasses.dataclass(frozen=True)
class EditArgs:
    enabled: bool = param(False, "Enable")
    image: object = param(None, "Input image", kind="image")  # img2img: replaces the init image as the edit source
    image_cfg_scale: float = param(1.5, "Image CFG scale (txt2img)", minimum=0.0, maximum=3.0, step=0.05,
                                   infotext="image CFG scale", xyz=True,
                                   info="how closely the result follows the input image; 1 = no image guidance; "
                                        "img2img uses its own Image CFG Scale")


SPEC = glue_params.ParamSpec(EditArgs, title=TITLE, infotext_prefix=TITLE)


@dataclasses.dataclass
class Run:
    """What before_process resolved for one generation (stored on `p`)."""
    values: EditArgs
    family: object  # lib_concat.EditFamily
    img2img: bool
    images: Optional[object]  # lib_concat.EditImages, or None: img2img's own source image
    provider: Optional[object] = None


def model_edit_family(sd_model):
    """The edit family of the loaded model, or None: an SDXL edit model set up at load, or the WebUI's own SD 1.x
    InstructPix2Pix (cond_stage_key 'edit', 8-channel UNet)."""
    found = getattr(sd_model, glue_edit.MODEL_ATTR, None)
    if found is not None:
        return found.family
    if getattr(sd_model, "cond_stage_key", None) == "edit" and not getattr(sd_model, "is_sdxl", False) \
            and glue_edit.conv_in_channels(sd_model) == 8:
        return concat.SD15_IP2P
    return None


def _checkpoint_name(sd_model) -> str:
    info = getattr(sd_model, "sd_checkpoint_info", None)
    return getattr(info, "title", None) or "the loaded checkpoint"


def _encoder(p):
    return lambda x: concat.posterior_mode(p.sd_model.first_stage_model, x)


def resolve(p, values: EditArgs, img2img: bool) -> Optional[Run]:
    """None when the feature has nothing to do (disabled on a model the WebUI runs itself); raises ConcatError /
    HostRefusal naming the fix."""
    family = model_edit_family(p.sd_model)
    if not values.enabled and (family is None or family.base != "sdxl"):
        return None
    glue_host.current().check(glue_host.EDIT, p)
    if family is None:
        channels = glue_edit.conv_in_channels(p.sd_model)
        raise concat.ConcatError(
            f"{TITLE}: {_checkpoint_name(p.sd_model)} is not an edit model (its UNet takes {channels} input channels; "
            "edit models take 8). Load an InstructPix2Pix or CosXL Edit checkpoint, or turn 'Edit model' off.")
    refiner, switch_at = getattr(p, "refiner_checkpoint", None), getattr(p, "refiner_switch_at", None)
    if refiner not in (None, "", "None", "none") and (switch_at is None or switch_at < 1):
        raise concat.ConcatError(f"{TITLE}: the refiner ('{refiner}') is not an edit model; its steps would ignore "
                                 "the input image. Turn the refiner off (or leave its checkpoint empty).")
    hr_checkpoint = getattr(p, "hr_checkpoint_name", None) if getattr(p, "enable_hr", False) else None
    if hr_checkpoint not in (None, "", "Use same checkpoint"):
        raise concat.ConcatError(f"{TITLE}: hires fix would switch to the checkpoint '{hr_checkpoint}' for the second "
                                 "pass, which would not edit the input image. Set the hires checkpoint to 'Use same "
                                 "checkpoint'.")
    images = as_list(values.image) if values.enabled else []
    if not images and not img2img:
        raise concat.ConcatError(
            f"{TITLE}: {_checkpoint_name(p.sd_model)} is an edit model ({family.label}): it edits an input image. "
            f"In txt2img enable '{TITLE}' and give an input image (or 'image' in the API arguments), or use img2img.")
    if len(images) not in (0, 1, p.batch_size):
        raise concat.ConcatError(f"{TITLE} got {len(images)} input images for a batch of {p.batch_size} images; "
                                 "give one image, or one per image of the batch.")
    edit_images = None
    if images:
        where = f"{TITLE}: argument 'image' ({SPEC.by_name['image'].label})"
        edit_images = concat.EditImages(images, p.width, p.height, family, _encoder(p), p.sd_model.scale_factor, where)
    return Run(values=values, family=family, img2img=img2img, images=edit_images)


def _provider(p, run: Run):
    """The concat for any latent: the accordion's images at the latent's size, or (img2img) the WebUI's source."""
    if run.images is not None:
        return concat.ConcatProvider(run.images.latent, matcher=lambda c, batch: concat.match_batch(
            c, batch, owner=TITLE, what="input images", one="input image"))
    family, scale = run.family, p.sd_model.scale_factor

    def from_source(source_image, latent_image, *_args, **_kwargs):
        latent = concat.image_latent(source_image, _encoder(p), scale, family)
        return concat.match_batch(latent, latent_image.shape[0], owner=TITLE).to(latent_image)

    return from_source


def infotext(run: Run) -> dict:
    """The family always (what ran); the feature's own keys when it was enabled (image CFG: txt2img only, img2img
    writes the WebUI's "Image CFG scale")."""
    entries = {FAMILY_KEY: run.family.label}
    if run.values.enabled:
        entries.update(SPEC.infotext(run.values) if not run.img2img else {SPEC.infotext_prefix: True})
    return entries


def disarm():
    glue_concat_rows.disarm(TITLE)


class EditModelScript(glue_script_base.spec_script(SPEC)):
    def before_process(self, p, *args):
        setattr(p, RUN_ATTR, None)
        disarm()  # heals a generation that never closed (an X/Y/Z cell's copy of p)
        try:
            values = SPEC.parse(args, p)
            setattr(p, RUN_ATTR, resolve(p, values, img2img=hasattr(p, "init_images")))
        except Exception as error:
            glue_failure.fail_generation(p, error)

    def process(self, p, *args):
        run = getattr(p, RUN_ATTR, None)
        if run is None:
            return
        try:
            if getattr(shared.opts, "skip_early_cond", 0):
                raise concat.ConcatError(
                    f"{TITLE}: Settings > Sampler parameters > 'Ignore negative prompt during early sampling' (skip "
                    "early CFG) drops the uncond rows, which the WebUI's edit-model guidance cannot do without. Set "
                    "it to 0 for edit models.")
            if run.images is not None or run.family.base == "sdxl" or not run.img2img:
                provider = _provider(p, run)
                run.provider = provider
                if isinstance(provider, concat.ConcatProvider):
                    glue_host.current().supply_concat(p, provider.for_latent)
                else:
                    p.img2img_image_conditioning = provider
            if run.family.base != "sdxl":  # SD 1.x: ldm joins c_concat itself; keep it fitted to x (hires crop)
                glue_concat_rows.arm(p.sd_model, TITLE)
                glue_lifecycle.call_on_close(p, "edit_model_rows", disarm)
            if not run.img2img:
                p.image_cfg_scale = run.values.image_cfg_scale
        except Exception as error:
            setattr(p, RUN_ATTR, None)
            glue_failure.fail_generation(p, error)
            return
        glue_infotext.add_infotext(p, infotext(run))

    def process_before_every_sampling(self, p, *args, **kwargs):
        run = getattr(p, RUN_ATTR, None)
        sampler = getattr(p, "sampler", None)
        if run is None or sampler is None:
            return
        try:
            if run.family.schedule == "edm_v" and not isinstance(getattr(sampler, "model_wrap", None),
                                                                 concat.EDMVDenoiser):
                name = (p.hr_sampler_name or p.sampler_name) if p.is_hr_pass else p.sampler_name
                raise concat.ConcatError(
                    f"{TITLE}: {run.family.label} samples on a continuous EDM schedule, which the WebUI gives to its "
                    f"k-diffusion samplers only; '{name}' runs on the discrete DDPM schedule. Pick a k-diffusion "
                    "sampler (Euler, Euler a, DPM++ 2M, ... and their CFG++ twins).")
            cfg = getattr(sampler, "model_wrap_cfg", None)
            x = kwargs.get("x")
            if not run.img2img and cfg is not None and cfg.init_latent is None and x is not None:
                cfg.init_latent = torch.zeros_like(x)
        except Exception as error:
            glue_failure.fail_generation(p, error)


def on_model_loaded(sd_model):
    glue_edit.setup(sd_model)


def on_script_unloaded():
    glue_edit.uninstall()
    glue_edit.teardown(shared.sd_model)
    disarm()


def register_axes():
    return glue_xyz.register_axes(SPEC)


if glue_host.detect().kind == glue_host.A1111:  # the config hook must be in place before the first model loads
    glue_edit.install()
# Scripts are executed again on "Reload UI": drop this file's earlier callbacks, then register once.
script_callbacks.remove_current_script_callbacks()
script_callbacks.on_model_loaded(on_model_loaded, name="Edit model setup")
script_callbacks.on_script_unloaded(on_script_unloaded, name="Edit model unload")
script_callbacks.on_before_ui(register_axes, name="Edit model X/Y/Z axes")
glue_fields_route.publish(SPEC)
script_callbacks.on_app_started(glue_fields_route.add_route, name="Edit model fields route")
