"""The SD x4 upscaler (x4-upscaler-ema.safetensors) as a WebUI upscaler: Extras, hires fix, img2img resize, API.

Adapter only: the models and the upscale live in lib_concat (x4_models, upscale_x4, tiling).
- `SdX4Upscaler` is a `modules.upscaler.Upscaler` subclass: the WebUI's `modelloader.load_upscalers` finds it
  after the scripts load (and on Reload UI), builds it with the folder of `--sdx4-models-path` (its naming rule:
  class name lower-cased without "upscaler"), and lists one upscaler per .safetensors file in the folder,
  named "SD x4 (<file name without .safetensors>)", in `shared.sd_upscalers` (Extras, hires fix, "Upscaler for
  img2img", `GET /sdapi/v1/upscalers`, `upscaler_1` / `hr_upscaler` in the API).
- Its own UNet, VAE and text encoder are loaded from the file on first use (the main checkpoint is not touched),
  run on the WebUI's device (`devices.device`; UNet and text encoder in `devices.dtype_unet` under the WebUI's
  autocast, the VAE in float32 without it), and after each image stay on the device, go to the CPU (default) or
  are unloaded, as Settings > Upscaling > "SD x4: after use" says.
- Settings > Upscaling: noise level (0-350), steps, CFG scale, sampler, tile size / overlap (input pixels), seed,
  and the prompt / negative prompt used in Extras. In hires fix (and img2img resize) the prompt, negative prompt
  and seed come from the generation, image by image; the settings used are added to the infotext and paste back.
- Problems (file missing or not the x4 upscaler, bad settings, an image under 16x16) are ConcatErrors with the
  fix; a generation whose hires pass would use a broken upscaler is stopped before sampling.
"""
import os
import random
from typing import Optional

import gradio as gr
import torch

from modules import devices, paths, script_callbacks, scripts, shared
from modules.upscaler import Upscaler, UpscalerData

from hdsuite_imports import suite_import

concat = suite_import("lib_concat")
x4_models = suite_import("lib_concat.x4_models")
glue_failure = suite_import("suite_glue.failure")
glue_infotext = suite_import("suite_glue.infotext")
glue_lifecycle = suite_import("suite_glue.lifecycle")

TITLE = "SD x4 upscaler"
FOLDER = "sd-x4-upscaler"
SECTION = ("upscaling", "Upscaling")
AFTER_USE = ("Keep on device", "Move to CPU", "Unload")
OPTIONS = {  # key: (default, label, component, args, infotext key)
    "sdx4_noise_level": (20, "SD x4: noise level (more = more new detail, less fidelity)", gr.Slider,
                         {"minimum": 0, "maximum": x4_models.MAX_NOISE_LEVEL, "step": 1}, "SD x4 noise level"),
    "sdx4_steps": (20, "SD x4: sampling steps", gr.Slider, {"minimum": 1, "maximum": 150, "step": 1}, "SD x4 steps"),
    "sdx4_cfg_scale": (9.0, "SD x4: CFG scale", gr.Slider, {"minimum": 1.0, "maximum": 30.0, "step": 0.5},
                       "SD x4 CFG scale"),
    "sdx4_sampler": ("DPM++ 2M", "SD x4: sampler (Karras schedule)", gr.Dropdown,
                     {"choices": list(concat.X4_SAMPLERS)}, "SD x4 sampler"),
    "sdx4_tile": (128, "SD x4: tile size (input pixels; smaller = less memory)", gr.Slider,
                  {"minimum": 32, "maximum": 1024, "step": 8}, "SD x4 tile"),
    "sdx4_tile_overlap": (32, "SD x4: tile overlap (input pixels, at most half the tile)", gr.Slider,
                          {"minimum": 0, "maximum": 512, "step": 8}, "SD x4 tile overlap"),
    "sdx4_seed": (-1, "SD x4: seed in Extras (-1 = random; hires fix uses each image's seed)", gr.Number, {}, None),
    "sdx4_prompt": ("", "SD x4: prompt in Extras (hires fix uses the generation's)", gr.Textbox, {}, None),
    "sdx4_negative_prompt": ("", "SD x4: negative prompt in Extras", gr.Textbox, {}, None),
    "sdx4_after_use": ("Move to CPU", "SD x4: after use", gr.Radio, {"choices": list(AFTER_USE)}, None),
}


def model_folder(dirname: Optional[str] = None) -> str:
    """`--sdx4-models-path`, else `<models>/sd-x4-upscaler`."""
    return dirname or getattr(shared.cmd_opts, "sdx4_models_path", None) or os.path.join(paths.models_path, FOLDER)


def list_files(folder: str) -> list:
    """(name without .safetensors, path) of every .safetensors file under `folder`, sorted."""
    found = []
    for root, _dirs, files in os.walk(folder):
        for file in files:
            if file.lower().endswith(".safetensors"):
                path = os.path.join(root, file)
                found.append((os.path.relpath(path, folder)[:-len(".safetensors")].replace(os.sep, "/"), path))
    return sorted(found)


def opt(key):
    return getattr(shared.opts, key, OPTIONS[key][0])


def settings(seed: int) -> "concat.X4Settings":
    values = dict(noise_level=opt("sdx4_noise_level"), steps=opt("sdx4_steps"), cfg_scale=opt("sdx4_cfg_scale"),
                  sampler=opt("sdx4_sampler"), tile=opt("sdx4_tile"), overlap=opt("sdx4_tile_overlap"))
    try:
        values = {k: (float(v) if k == "cfg_scale" else v if k == "sampler" else int(v)) for k, v in values.items()}
    except (TypeError, ValueError) as exc:
        raise concat.ConcatError(f"{TITLE}: a setting in Settings > Upscaling is not a number ({exc})") from None
    return concat.X4Settings(seed=int(seed), **values)


def tokenizer():
    """OpenCLIP's tokenizer (ships with the WebUI: SD 2 uses it)."""
    try:
        import open_clip
    except ImportError:
        raise concat.ConcatError(f"{TITLE} needs the open_clip package, which the WebUI installs for SD 2 "
                                 "(pip install open-clip-torch in the WebUI's venv)") from None
    return open_clip.tokenize


# --- loaded models (one file at a time) -----------------------------------------------------------------------
_loaded = {}


def loaded(path: str):
    """The X4Upscaler for `path`, loading it (and dropping another file's) when needed."""
    if path not in _loaded:
        unload()
        models = x4_models.load_models(path)
        runtime = concat.Runtime(device=devices.device, unet_dtype=devices.dtype_unet, vae_dtype=torch.float32,
                                 unet_context=devices.autocast, vae_context=devices.without_autocast,
                                 interrupted=lambda: shared.state.interrupted)
        _loaded[path] = concat.X4Upscaler(models, tokenizer(), runtime)
    return _loaded[path]


def unload() -> None:
    """Drop the loaded models (their memory is freed once nothing else holds them)."""
    _loaded.clear()
    devices.torch_gc()


def after_use(upscaler) -> None:
    policy = opt("sdx4_after_use")
    if policy == "Unload":
        unload()
    elif policy == "Move to CPU":
        upscaler.offload("cpu")
        devices.torch_gc()


# --- prompts of the generation being upscaled (hires fix, img2img resize) ---------------------------------------
class Context:
    """Prompts and seeds of the images a generation is about to upscale, taken in order (one per `upscale` call:
    the hires pass resizes its batch image by image, img2img its init images)."""

    def __init__(self, prompts, negatives, seeds):
        self.set(prompts, negatives, seeds)

    def set(self, prompts, negatives, seeds):
        self.prompts, self.negatives, self.seeds, self.index = list(prompts), list(negatives), list(seeds), 0

    def next(self):
        i = self.index
        self.index += 1
        pick = lambda values, default: values[i % len(values)] if values else default  # noqa: E731
        return pick(self.prompts, ""), pick(self.negatives, ""), pick(self.seeds, 0)


_context = None  # a Context while a generation may call the upscaler (no annotation: typing's cache would
#                 keep this module alive after Reload UI)


def names() -> set:
    return {data.name for data in shared.sd_upscalers if isinstance(data.scaler, SdX4Upscaler)}


def uses_x4(p) -> Optional[str]:
    """The name of our upscaler this generation will call, if any."""
    if getattr(p, "enable_hr", False) and getattr(p, "hr_upscaler", None) in names():
        return p.hr_upscaler
    if hasattr(p, "init_images") and getattr(shared.opts, "upscaler_for_img2img", None) in names():
        return shared.opts.upscaler_for_img2img
    return None


class SdX4Upscaler(Upscaler):
    def __init__(self, dirname=None):
        self.name = TITLE
        self.model_path = model_folder(dirname)
        super().__init__(False)
        self.scalers = [UpscalerData(f"SD x4 ({name})", path, self, 4) for name, path in list_files(self.model_path)]

    def load_model(self, path):
        return loaded(path)

    def upscale(self, img, scale, selected_model=None):
        prompt = _context.next() if _context is not None else None
        self._prompt = prompt
        return super().upscale(img, scale, selected_model)

    def do_upscale(self, img, selected_model):
        prompt = getattr(self, "_prompt", None)
        if prompt is None:  # Extras: the settings' prompts and seed
            seed = int(opt("sdx4_seed"))
            prompt = (opt("sdx4_prompt"), opt("sdx4_negative_prompt"), random.randrange(2 ** 32) if seed < 0 else seed)
        upscaler = loaded(selected_model)
        run_settings = settings(prompt[2])
        try:
            upscaler.to_runtime()
            return upscaler.upscale(img, prompt[0], prompt[1], run_settings)
        finally:
            after_use(upscaler)


def infotext(values) -> dict:
    return {OPTIONS[k][4]: getattr(values, field) for k, field in
            (("sdx4_noise_level", "noise_level"), ("sdx4_steps", "steps"), ("sdx4_cfg_scale", "cfg_scale"),
             ("sdx4_sampler", "sampler"), ("sdx4_tile", "tile"), ("sdx4_tile_overlap", "overlap"))}


class SdX4Prompts(scripts.Script):
    """No UI: gives the upscaler the prompts of the generation whose images it upscales; inert otherwise."""

    def title(self):
        return TITLE

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def process(self, p, *args):
        global _context
        name = uses_x4(p)
        if name is None:
            return
        try:
            values = settings(0)
            values.check(x4_models.MAX_NOISE_LEVEL)
            path = next(data.data_path for data in shared.sd_upscalers if data.name == name)
            loaded(path)  # file problems stop the generation now, not after the first pass
        except Exception as error:
            glue_failure.fail_generation(p, error)
            return
        _context = Context(p.all_prompts, p.all_negative_prompts, p.all_seeds)
        glue_lifecycle.call_on_close(p, "sdx4", clear_context)
        if getattr(p, "enable_hr", False):
            glue_infotext.add_infotext(p, infotext(values))

    def process_batch(self, p, *args, **kwargs):
        if _context is not None and uses_x4(p):
            _context.set(getattr(p, "hr_prompts", None) or p.prompts,
                         getattr(p, "hr_negative_prompts", None) or p.negative_prompts, p.seeds)


def clear_context():
    global _context
    _context = None


def on_ui_settings():
    for key, (default, label, component, args, infotext_key) in OPTIONS.items():
        shared.opts.add_option(key, shared.OptionInfo(default, label, component, args, section=SECTION,
                                                      infotext=infotext_key))


script_callbacks.remove_current_script_callbacks()
script_callbacks.on_ui_settings(on_ui_settings, name="SD x4 settings")
script_callbacks.on_script_unloaded(unload, name="SD x4 unload")
