"""Host double of modules/api/api.py (v1.10.1): how `/sdapi/v1/txt2img|img2img` build script arguments and run.

- `Api(txt2img_runner, img2img_runner)`: as `Api.__init__`, the default script arguments of each tab are built once,
  at start-up, by `init_default_script_args`: a list of None as long as the largest `args_to`, position 0 = 0, then
  inside a `gr.Blocks()` every script's `ui()` is run again and each returned component's `.value` written to its
  slice (an empty Dropdown gives None, an untouched Image None). Files added or deleted later are not seen.
- `init_script_args`: a copy of those defaults; for every `alwayson_scripts` entry (title matched lower-cased, as
  `script_name_to_index`) its "args" overwrite the first min(len(args), args_to - args_from) positions of the
  script's slice; an unknown title is a 422.
- `text2imgapi` / `img2imgapi(request)`: validate the sampler name (`validate_sampler_name`), build the processing
  object from the request fields, `p.is_api = True`, `p.scripts = runner`, `p.script_args = tuple(script_args)`,
  `with closing(p): process_images(p)`. img2img decodes `init_images` / `mask` (base64) as `decode_base64_to_image`.
- `get_upscalers()` (`GET /sdapi/v1/upscalers`): name, model_name, model_path, model_url, scale of every entry of
  `shared.sd_upscalers`, as `Api.get_upscalers`.
- `extras_single_image_api(request)` (`POST /sdapi/v1/extra-single-image`), "Scale by" mode only: the upscaler is
  looked up by `upscaler_1` in `shared.sd_upscalers` (an unknown name fails the assertion of v1.10.1
  `ScriptPostprocessingUpscale.process`) and called as `upscaler.scaler.upscale(image, upscaling_resize,
  upscaler.data_path)` (`ScriptPostprocessingUpscale.upscale`); the response holds the PIL image and the info.
Selectable scripts, infotext in requests and image encoding of the response are not reproduced.
"""
from __future__ import annotations

import base64
import io
from contextlib import closing

from PIL import Image

from modules import processing, sd_samplers, shared


class HTTPException(Exception):
    def __init__(self, status_code: int, detail: str):
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


def decode_base64_to_image(encoding):
    if isinstance(encoding, Image.Image):
        return encoding
    if encoding.startswith("data:image/"):
        encoding = encoding.split(";")[1].split(",")[1]
    try:
        image = Image.open(io.BytesIO(base64.b64decode(encoding)))
        image.load()
        return image
    except Exception as e:
        raise HTTPException(status_code=500, detail="Invalid encoded image") from e


def validate_sampler_name(name):
    config = sd_samplers.all_samplers_map.get(name, None)
    if config is None:
        raise HTTPException(status_code=400, detail="Sampler not found")
    return name


class Api:
    def __init__(self, txt2img_runner, img2img_runner):
        self.txt2img_runner = txt2img_runner
        self.img2img_runner = img2img_runner
        self.default_script_arg_txt2img = self.init_default_script_args(txt2img_runner)
        self.default_script_arg_img2img = self.init_default_script_args(img2img_runner)

    @staticmethod
    def init_default_script_args(script_runner):
        import gradio as gr
        last_arg_index = 1
        for script in script_runner.scripts:
            if last_arg_index < script.args_to:
                last_arg_index = script.args_to
        script_args = [None] * last_arg_index
        script_args[0] = 0
        with gr.Blocks():
            for script in script_runner.scripts:
                if script.ui(script.is_img2img):
                    script_args[script.args_from:script.args_to] = [e.value for e in script.ui(script.is_img2img)]
        return script_args

    @staticmethod
    def get_script(script_name, script_runner):
        titles = [script.title().lower() for script in script_runner.scripts]
        if script_name.lower() not in titles:
            raise HTTPException(status_code=422, detail=f"Script '{script_name}' not found")
        return script_runner.scripts[titles.index(script_name.lower())]

    def init_script_args(self, request: dict, default_script_args, script_runner):
        script_args = default_script_args.copy()
        for name, entry in (request.get("alwayson_scripts") or {}).items():
            script = self.get_script(name, script_runner)
            if script.alwayson is False:
                raise HTTPException(status_code=422, detail="Cannot have a selectable script in the always on scripts params")
            if "args" in entry:
                for idx in range(0, min(script.args_to - script.args_from, len(entry["args"]))):
                    script_args[script.args_from + idx] = entry["args"][idx]
        return script_args

    def _run(self, p_class, request: dict, default_script_args, runner):
        fields = {k: v for k, v in request.items() if k not in ("alwayson_scripts", "script_name", "script_args")}
        fields["sampler_name"] = validate_sampler_name(fields.get("sampler_name") or "Euler")
        script_args = self.init_script_args(request, default_script_args, runner)
        with closing(p_class(**fields)) as p:
            p.is_api = True
            p.scripts = runner
            p.script_args = tuple(script_args)
            return processing.process_images(p)

    def text2imgapi(self, request: dict):
        return self._run(processing.StableDiffusionProcessingTxt2Img, request, self.default_script_arg_txt2img,
                         self.txt2img_runner)

    def img2imgapi(self, request: dict):
        request = dict(request)
        request["init_images"] = [decode_base64_to_image(x) for x in request.get("init_images") or []]
        if request.get("mask") is not None:
            request["image_mask"] = decode_base64_to_image(request.pop("mask"))
        return self._run(processing.StableDiffusionProcessingImg2Img, request, self.default_script_arg_img2img,
                         self.img2img_runner)

    def get_upscalers(self):
        return [{"name": upscaler.name, "model_name": upscaler.scaler.model_name, "model_path": upscaler.data_path,
                 "model_url": None, "scale": upscaler.scale} for upscaler in shared.sd_upscalers]

    def extras_single_image_api(self, request: dict):
        image = decode_base64_to_image(request["image"])
        name = request.get("upscaler_1", "None")
        name = None if name == "None" else name
        upscaler = next(iter([x for x in shared.sd_upscalers if x.name == name]), None)
        assert upscaler or (name is None), f"could not find upscaler named {name}"
        if upscaler is not None:
            image = upscaler.scaler.upscale(image, request.get("upscaling_resize", 2), upscaler.data_path)
        return {"image": image, "html_info": f"Postprocess upscaler: {name}" if name else ""}
