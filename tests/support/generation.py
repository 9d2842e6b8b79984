"""Run whole WebUI generations (txt2img, img2img, hires fix) through the host double on a tiny model.

`load_model(family)` installs a TinyLDM as `shared.sd_model` with a deterministic stand-in text encoder
(`text_encoder`: 77 tokens per 75-word chunk, as the WebUI's; SDXL returns {'crossattn', 'vector'}).
`txt2img` / `img2img` build the processing object, attach the scripts with their args, run `process_images`
inside `closing(p)` and return the `Processed` (its `.latents` are the final latents).
"""
from __future__ import annotations

import contextlib

from PIL import Image

from modules import processing, scripts, script_callbacks, shared

from .text_encoder import attach_text_encoder
from .tiny_models import make_ldm


def install_model(model):
    """Give `model` the stand-in text encoder, make it the WebUI's current model and fire on_model_loaded."""
    attach_text_encoder(model)
    shared.sd_model = model
    script_callbacks.model_loaded_callback(model)
    return model


def load_model(family: str = "sd15", seed: int = 0, **kwargs):
    """Make a tiny model of `family` and install it (see `install_model`)."""
    return install_model(make_ldm(family, seed, **kwargs))


def reset_host():
    shared.opts.reset()
    shared.state.reset()
    scripts.reported_errors.clear()
    script_callbacks.reported_errors.clear()


DEFAULTS = dict(prompt="a cat", negative_prompt="blurry", seed=1, steps=4, cfg_scale=7.0, width=64, height=64,
                sampler_name="Euler", scheduler="Automatic")


def _run(p, script_list, script_args, is_img2img, arg_counts, runner=None):
    """`runner`: a ScriptRunner built elsewhere (e.g. with its UI); else one for `script_list` (`arg_counts` given:
    no UI is built)."""
    if runner is None and script_list:
        runner = scripts.ScriptRunner(list(script_list), is_img2img=is_img2img, arg_counts=arg_counts)
    if runner is not None:
        p.scripts = runner
        p.script_args = [0, *script_args]  # position 0: the selectable script's index (0 = None), as in v1.10.1
    with contextlib.closing(p):
        return processing.process_images(p)


def txt2img(script_list=(), script_args=(), arg_counts=None, p_hook=None, runner=None, **fields):
    p = processing.StableDiffusionProcessingTxt2Img(**{**DEFAULTS, **fields})
    if p_hook:
        p_hook(p)
    return _run(p, script_list, script_args, False, arg_counts, runner)


def gradient_image(width: int, height: int) -> Image.Image:
    import numpy as np
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(255, 0, height, dtype=np.float32)[:, None, None]
    rgb = np.concatenate([np.broadcast_to(x, (height, width, 1)), np.broadcast_to(y, (height, width, 1)),
                          np.full((height, width, 1), 128.0, dtype=np.float32)], axis=2)
    return Image.fromarray(rgb.astype("uint8"))


def img2img(script_list=(), script_args=(), arg_counts=None, p_hook=None, runner=None, **fields):
    fields = {**DEFAULTS, "denoising_strength": 0.6, **fields}
    if "init_images" not in fields:
        fields["init_images"] = [gradient_image(fields["width"], fields["height"])]
    p = processing.StableDiffusionProcessingImg2Img(**fields)
    if p_hook:
        p_hook(p)
    return _run(p, script_list, script_args, True, arg_counts, runner)
