"""Host double of modules.script_callbacks: the param classes and the callbacks our scripts use.

Callbacks are recorded with the file that registered them, as in v1.10.1, so that
`remove_current_script_callbacks()` drops those of the calling file. Errors in callbacks are reported
and swallowed, like the WebUI does.
"""
from __future__ import annotations

import dataclasses
import inspect
import traceback
from typing import Any


class CFGDenoiserParams:
    def __init__(self, x, image_cond, sigma, sampling_step, total_sampling_steps, text_cond, text_uncond, denoiser=None):
        self.x = x
        self.image_cond = image_cond
        self.sigma = sigma
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps
        self.text_cond = text_cond
        self.text_uncond = text_uncond
        self.denoiser = denoiser


class CFGDenoisedParams:
    def __init__(self, x, sampling_step, total_sampling_steps, inner_model):
        self.x = x
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps
        self.inner_model = inner_model


class AfterCFGCallbackParams:
    def __init__(self, x, sampling_step, total_sampling_steps):
        self.x = x
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps


class ExtraNoiseParams:
    def __init__(self, noise, x, xi):
        self.noise = noise
        self.x = x
        self.xi = xi


@dataclasses.dataclass
class ScriptCallback:
    script: str
    callback: Any
    name: str = "unnamed"


CATEGORIES = ("cfg_denoiser", "cfg_denoised", "cfg_after_cfg", "model_loaded", "script_unloaded",
              "ui_settings", "infotext_pasted", "extra_noise", "before_ui", "app_started")
callback_map = {f"callbacks_{name}": [] for name in CATEGORIES}
reported_errors = []


def _caller_file():
    stack = [frame for frame in inspect.stack() if frame.filename != __file__]
    return stack[0].filename if stack else "unknown file"


def _add(category, callback, name=None):
    callback_map[f"callbacks_{category}"].append(ScriptCallback(_caller_file(), callback, name or "unnamed"))


def _run(category, *args):
    for c in list(callback_map[f"callbacks_{category}"]):
        try:
            c.callback(*args)
        except Exception:  # the WebUI reports and goes on
            reported_errors.append((category, traceback.format_exc()))


def clear_callbacks():
    for callbacks in callback_map.values():
        callbacks.clear()


def remove_current_script_callbacks():
    filename = _caller_file()
    for callbacks in callback_map.values():
        for c in [c for c in callbacks if c.script == filename]:
            callbacks.remove(c)


def remove_callbacks_for_function(callback_func):
    for callbacks in callback_map.values():
        for c in [c for c in callbacks if c.callback == callback_func]:
            callbacks.remove(c)


def on_cfg_denoiser(callback, *, name=None):
    _add("cfg_denoiser", callback, name)


def on_cfg_denoised(callback, *, name=None):
    _add("cfg_denoised", callback, name)


def on_cfg_after_cfg(callback, *, name=None):
    _add("cfg_after_cfg", callback, name)


def on_model_loaded(callback, *, name=None):
    _add("model_loaded", callback, name)


def on_script_unloaded(callback, *, name=None):
    _add("script_unloaded", callback, name)


def on_ui_settings(callback, *, name=None):
    _add("ui_settings", callback, name)


def on_infotext_pasted(callback, *, name=None):
    _add("infotext_pasted", callback, name)


def on_extra_noise(callback, *, name=None):
    _add("extra_noise", callback, name)


def on_before_ui(callback, *, name=None):
    _add("before_ui", callback, name)


def on_app_started(callback, *, name=None):
    _add("app_started", callback, name)


def cfg_denoiser_callback(params: CFGDenoiserParams):
    _run("cfg_denoiser", params)


def cfg_denoised_callback(params: CFGDenoisedParams):
    _run("cfg_denoised", params)


def cfg_after_cfg_callback(params: AfterCFGCallbackParams):
    _run("cfg_after_cfg", params)


def model_loaded_callback(sd_model):
    _run("model_loaded", sd_model)


def script_unloaded_callback():
    _run("script_unloaded")


def before_ui_callback():
    """v1.10.1 `before_ui_callback`: after every script file is loaded, before the UI (and in --nowebui mode before
    the API) is built; callbacks run in reverse order."""
    for c in reversed(list(callback_map["callbacks_before_ui"])):
        try:
            c.callback()
        except Exception:
            reported_errors.append(("before_ui", traceback.format_exc()))


def app_started_callback(demo, app):
    """v1.10.1 `app_started_callback(demo, app)`: the FastAPI app, once started (demo is None with --nowebui)."""
    _run("app_started", demo, app)


def ui_settings_callback():
    _run("ui_settings")


def infotext_pasted_callback(infotext: str, params: dict):
    _run("infotext_pasted", infotext, params)


def extra_noise_callback(params: ExtraNoiseParams):
    _run("extra_noise", params)
