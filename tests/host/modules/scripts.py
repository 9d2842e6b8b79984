"""Host double of modules.scripts: `Script`, `AlwaysVisible`, `ScriptRunner` and the hook arg classes.

As in v1.10.1, every hook of an always-on script gets `p.script_args[args_from:args_to]` (position 0 of
`p.script_args` is the selectable-script index), and an exception
raised inside a hook is reported and swallowed (the generation goes on). `scripts_data` lists loaded script
modules; the X/Y/Z plot is found there by extensions (`script_class.__module__ == "xyz_grid.py"`).
"""
from __future__ import annotations

import collections
import os
import traceback

AlwaysVisible = object()

ScriptClassData = collections.namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])
scripts_data: list = []
reported_errors: list = []


class MaskBlendArgs:
    def __init__(self, current_latent, nmask, init_latent, mask, blended_latent, denoiser=None, sigma=None):
        self.current_latent = current_latent
        self.nmask = nmask
        self.init_latent = init_latent
        self.mask = mask
        self.blended_latent = blended_latent
        self.denoiser = denoiser
        self.is_final_blend = denoiser is None
        self.sigma = sigma


class PostSampleArgs:
    def __init__(self, samples):
        self.samples = samples


class PostprocessImageArgs:
    def __init__(self, image):
        self.image = image


class PostprocessBatchListArgs:
    def __init__(self, images):
        self.images = images


class Script:
    name = None
    section = None
    filename = None
    args_from = None
    args_to = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    tabname = None
    group = None
    infotext_fields = None
    paste_field_names = None
    api_info = None
    setup_for_ui_only = False
    controls = None

    def title(self):
        raise NotImplementedError()

    def ui(self, is_img2img):
        pass

    def show(self, is_img2img):
        return True

    def run(self, p, *args):
        pass

    def setup(self, p, *args):
        pass

    def before_process(self, p, *args):
        pass

    def process(self, p, *args):
        pass

    def before_process_batch(self, p, *args, **kwargs):
        pass

    def process_batch(self, p, *args, **kwargs):
        pass

    def process_before_every_sampling(self, p, *args, **kwargs):
        pass

    def postprocess_batch(self, p, *args, **kwargs):
        pass

    def post_sample(self, p, ps, *args):
        pass

    def on_mask_blend(self, p, mba, *args):
        pass

    def postprocess_image(self, p, pp, *args):
        pass

    def postprocess(self, p, processed, *args):
        pass

    def before_hr(self, p, *args):
        pass

    def elem_id(self, item_id):
        title = "".join(c if c.isalnum() else "_" for c in self.title().lower())
        return f"script_{self.tabname or 'txt2img'}_{title}_{item_id}"


def basedir():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ScriptRunner:
    """Always-on scripts only.

    Follows `ScriptRunner.setup_ui` / `create_script_ui` / `create_script_ui_inner` of v1.10.1: `inputs` starts as
    `[None]` (position 0 is the "Script" dropdown: the selectable script's index, 0 = None), then each always-on
    script's `ui()` controls are appended, `args_from`/`args_to` bracket them, and `controls`, `name`,
    `infotext_fields` and `paste_field_names` are kept. The UI is built inside a `gr.Blocks()` as the WebUI does.
    `arg_counts` skips building the UI (tests of hooks only): each script then gets that many positions."""

    def __init__(self, scripts, is_img2img=False, arg_counts=None):
        self.scripts = list(scripts)
        self.alwayson_scripts = []
        self.is_img2img = is_img2img
        for script in self.scripts:
            script.is_txt2img = not is_img2img
            script.is_img2img = is_img2img
            script.tabname = "img2img" if is_img2img else "txt2img"
            if script.show(is_img2img) is AlwaysVisible:
                script.alwayson = True
                self.alwayson_scripts.append(script)
        self.inputs = [None]
        self.infotext_fields = []
        self.paste_field_names = []
        if arg_counts is None:
            self.setup_ui()
        else:
            for script, count in zip(self.alwayson_scripts, arg_counts):
                script.args_from, script.args_to = len(self.inputs), len(self.inputs) + count
                self.inputs += [None] * count
        self.args_count = len(self.inputs)

    def setup_ui(self):
        import gradio as gr
        with gr.Blocks():
            self.inputs[0] = gr.Dropdown(label="Script", elem_id="script_list", choices=["None"], value="None",
                                         type="index")
            for script in self.alwayson_scripts:
                script.args_from = script.args_to = len(self.inputs)
                controls = script.ui(script.is_img2img)
                script.controls = controls
                if controls is None:
                    continue
                script.name = script.title().lower()
                self.infotext_fields += script.infotext_fields or []
                self.paste_field_names += script.paste_field_names or []
                self.inputs += list(controls)
                script.args_to = len(self.inputs)

    @property
    def titles(self):
        return [s.title().lower() for s in self.alwayson_scripts]

    def script(self, title):
        return next((s for s in self.alwayson_scripts if s.title().lower() == title.lower()), None)

    def _call(self, name, p, *args, **kwargs):
        for script in self.alwayson_scripts:
            if getattr(type(script), name, None) is getattr(Script, name, None):
                continue
            try:
                script_args = p.script_args[script.args_from:script.args_to]
                getattr(script, name)(p, *args, *script_args, **kwargs)
            except Exception:
                reported_errors.append((name, script.filename, traceback.format_exc()))

    def setup_scrips(self, p, *, is_ui=True):
        self._call("setup", p)

    def before_process(self, p):
        self._call("before_process", p)

    def process(self, p):
        self._call("process", p)

    def before_process_batch(self, p, **kwargs):
        self._call("before_process_batch", p, **kwargs)

    def process_batch(self, p, **kwargs):
        self._call("process_batch", p, **kwargs)

    def process_before_every_sampling(self, p, **kwargs):
        self._call("process_before_every_sampling", p, **kwargs)

    def before_hr(self, p):
        self._call("before_hr", p)

    def post_sample(self, p, ps):
        self._call("post_sample", p, ps)

    def on_mask_blend(self, p, mba):
        self._call("on_mask_blend", p, mba)

    def postprocess_batch(self, p, images, **kwargs):
        for script in self.alwayson_scripts:
            if getattr(type(script), "postprocess_batch") is Script.postprocess_batch:
                continue
            try:
                script.postprocess_batch(p, *p.script_args[script.args_from:script.args_to], images=images, **kwargs)
            except Exception:
                reported_errors.append(("postprocess_batch", script.filename, traceback.format_exc()))

    def postprocess_image(self, p, pp):
        self._call("postprocess_image", p, pp)

    def postprocess(self, p, processed):
        for script in self.alwayson_scripts:
            if getattr(type(script), "postprocess") is Script.postprocess:
                continue
            try:
                script.postprocess(p, processed, *p.script_args[script.args_from:script.args_to])
            except Exception:
                reported_errors.append(("postprocess", script.filename, traceback.format_exc()))
