"""Depth: your own depth map for SD 2 depth checkpoints (512-depth-ema), in txt2img and img2img.

Adapter only: the map handling and the WebUI's normalisation live in lib_concat.depth.
- Source "use this map": the map (one for the batch, or one per image) becomes the depth channel of every
  sampling pass at its latent size: first pass, hires pass (resized again), img2img; AND prompts and NGMS rows
  map per image (the CFG denoiser's rows; suite_glue.concat_rows keeps c_concat fitted to x).
- Source "estimate" (img2img only): the WebUI's own MiDaS estimate runs as without the extension (its weights are
  downloaded by the WebUI on first use); only the infotext says so.
Hooks: before_process checks the arguments (map decoded at its bit depth, source vs tab, batch count, no hires
checkpoint / refiner switch) without touching anything; process checks the loaded checkpoint is a depth model
(after override_settings reloaded it) and installs the map's concat through the host (suite_glue.host
`supply_concat`); any problem stops the generation before sampling. Disabled: nothing is installed or written,
whatever the other values are.
API: `alwayson_scripts: {"Depth": {"args": [{"enabled": true, "depth_map": "<base64 PNG>"}]}}` (a list of maps:
one per image of the batch).
"""
import dataclasses
import os
from typing import Optional

from modules import script_callbacks

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
as_list = suite_import("suite_glue.images").as_list
param = glue_params.param

TITLE = "Depth"
RUN_ATTR = "depth_run"
MAP, ESTIMATE = "use this map", "estimate"


@dataclasses.dataclass(frozen=True)
class DepthArgs:
    enabled: bool = param(False, "Enable")
    source: str = param(MAP, "Depth source", choices=(MAP, ESTIMATE), infotext="source", ui="radio", xyz=True,
                        info="estimate: the WebUI's MiDaS estimate of the input image (img2img only)")
    depth_map: object = param(None, "Depth map (near = bright; 8/16-bit grey or RGB)", kind="image16")
    invert: bool = param(False, "Invert (for maps where near is dark)", infotext="invert", xyz=True)


SPEC = glue_params.ParamSpec(DepthArgs, title=TITLE)


@dataclasses.dataclass
class Run:
    values: DepthArgs
    spec: Optional[object]  # lib_concat.DepthSpec; None: the WebUI's estimate


def _checkpoint_name(sd_model) -> str:
    info = getattr(sd_model, "sd_checkpoint_info", None)
    return getattr(info, "title", None) or os.path.basename(getattr(sd_model, "sd_model_checkpoint", "") or "") or \
        "the loaded checkpoint"


def check_depth_model(sd_model) -> None:
    """ConcatError unless `sd_model`'s UNet is an SD 2 depth UNet (5 input channels, context 1024)."""
    unet = getattr(getattr(sd_model, "model", None), "diffusion_model", None)
    shapes = {k: v.shape for k, v in unet.state_dict().items()} if unet is not None else {}
    kind = concat.detect_model_kind(shapes)
    if kind.kind != "depth":
        raise concat.ConcatError(
            f"{TITLE}: {_checkpoint_name(sd_model)} is not an SD 2 depth model ({kind.reason}). Load a depth "
            "checkpoint (e.g. 512-depth-ema.safetensors from stabilityai/stable-diffusion-2-depth) or turn Depth off.")


def refuse_checkpoint_switches(p) -> None:
    """The map conditions the depth model only: refuse what would swap in another checkpoint mid-generation."""
    hr_checkpoint = getattr(p, "hr_checkpoint_name", None) if getattr(p, "enable_hr", False) else None
    if hr_checkpoint and hr_checkpoint != "Use same checkpoint":
        raise concat.ConcatError(f"{TITLE}: hires fix would switch to the checkpoint '{hr_checkpoint}'; the depth "
                                 "map needs the depth checkpoint in both passes. Set the hires checkpoint to 'Use "
                                 "same checkpoint'.")
    refiner, switch_at = getattr(p, "refiner_checkpoint", None), getattr(p, "refiner_switch_at", None)
    if refiner not in (None, "", "None", "none") and (switch_at is None or switch_at < 1):
        raise concat.ConcatError(f"{TITLE}: the refiner ('{refiner}') swaps the checkpoint in the middle of sampling; "
                                 "the depth map needs the depth checkpoint throughout. Turn the refiner off.")


def resolve(p, values: DepthArgs, img2img: bool) -> Run:
    glue_host.current().check(glue_host.DEPTH, p)
    refuse_checkpoint_switches(p)
    if values.source == ESTIMATE:
        if not img2img:
            raise concat.ConcatError(f"{TITLE}: 'estimate' makes the depth from the input image, which txt2img does "
                                     "not have. Give a depth map (source 'use this map'), or use img2img.")
        return Run(values, None)
    maps = as_list(values.depth_map)
    if not maps:
        raise concat.ConcatError(f"{TITLE}: give a depth map (argument 'depth_map': near = bright, as MiDaS makes "
                                 "them; 8- or 16-bit greyscale or RGB)"
                                 + (", or choose the source 'estimate' for the WebUI's own." if img2img else "."))
    if len(maps) not in (1, p.batch_size):
        raise concat.ConcatError(f"{TITLE} got {len(maps)} depth maps for a batch of {p.batch_size} images; give one "
                                 "depth map, or one per image of the batch.")
    where = f"{TITLE}: argument 'depth_map' ({SPEC.by_name['depth_map'].label})"
    return Run(values, concat.DepthSpec.from_images(maps, values.invert, where=where))


def disarm():
    glue_concat_rows.disarm(TITLE)


class DepthScript(glue_script_base.spec_script(SPEC)):
    def before_process(self, p, *args):
        setattr(p, RUN_ATTR, None)
        try:
            values = SPEC.parse(args, p)
            if values.enabled:
                setattr(p, RUN_ATTR, resolve(p, values, img2img=hasattr(p, "init_images")))
        except Exception as error:
            glue_failure.fail_generation(p, error)

    def process(self, p, *args):
        run = getattr(p, RUN_ATTR, None)
        if run is None:
            return
        try:
            check_depth_model(p.sd_model)
            if run.spec is not None:
                glue_host.current().supply_concat(p, concat.depth_provider(run.spec).for_latent)
                glue_concat_rows.arm(p.sd_model, TITLE)  # NGMS / skip-early-CFG rows, the hires crop
                glue_lifecycle.call_on_close(p, "depth_rows", disarm)
        except Exception as error:
            setattr(p, RUN_ATTR, None)
            glue_failure.fail_generation(p, error)
            return
        glue_infotext.add_infotext(p, SPEC.infotext(run.values))


def register_axes():
    return glue_xyz.register_axes(SPEC)


# Scripts are executed again on "Reload UI": drop this file's earlier callbacks, then register once.
script_callbacks.remove_current_script_callbacks()
script_callbacks.on_script_unloaded(disarm, name="Depth disarm")
# the X/Y/Z plot loads after this file (metadata.ini "Before"); before_ui fires once every script is loaded
script_callbacks.on_before_ui(register_axes, name="Depth X/Y/Z axes")
glue_fields_route.publish(SPEC)
script_callbacks.on_app_started(glue_fields_route.add_route, name="Depth fields route")
