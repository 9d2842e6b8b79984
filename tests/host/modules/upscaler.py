"""Host double of modules.upscaler (v1.10.1): the `Upscaler` base class extensions subclass, `UpscalerData`, and the
built-in non-model upscalers None, Lanczos and Nearest.

- `Upscaler.__init__(create_dirs=False)` follows v1.10.1: tile settings from opts.ESRGAN_tile / ESRGAN_tile_overlap,
  `device` = shared.device, `half` = not cmd_opts.no_half, and `model_path` = <models_path>/<name> when the class
  set a `name` but no `model_path`.
- `Upscaler.upscale(img, scale, selected_model)` follows v1.10.1: destination size = int(size * scale // 8 * 8);
  up to 3 `do_upscale` passes until the image covers it (stopping early on an interrupt or when a pass does not
  change the size), then a LANCZOS resize to exactly that size.
- `builtin_upscalers()` (double only): the scalers of UpscalerNone, UpscalerLanczos and UpscalerNearest, the list
  `shared.sd_upscalers` holds before `modelloader.load_upscalers` runs (hires fix and resize_image look names up
  there).
"""
import os
from abc import abstractmethod

from PIL import Image

LANCZOS = Image.Resampling.LANCZOS
NEAREST = Image.Resampling.NEAREST


class Upscaler:
    name = None
    model_path = None
    model_name = None
    model_url = None
    enable = True
    filter = None
    model = None
    user_path = None
    scalers: list
    tile = True

    def __init__(self, create_dirs=False):
        from . import shared
        self.mod_pad_h = None
        self.tile_size = shared.opts.ESRGAN_tile
        self.tile_pad = shared.opts.ESRGAN_tile_overlap
        self.device = shared.device
        self.img = None
        self.output = None
        self.scale = 1
        self.half = not shared.cmd_opts.no_half
        self.pre_pad = 0
        self.mod_scale = None
        self.model_download_path = None
        if self.model_path is None and self.name:
            self.model_path = os.path.join(shared.models_path, self.name)
        if self.model_path and create_dirs:
            os.makedirs(self.model_path, exist_ok=True)

    @abstractmethod
    def do_upscale(self, img, selected_model: str):
        return img

    def upscale(self, img, scale, selected_model: str = None):
        from . import shared
        self.scale = scale
        dest_w = int((img.width * scale) // 8 * 8)
        dest_h = int((img.height * scale) // 8 * 8)
        for i in range(3):
            if img.width >= dest_w and img.height >= dest_h and (i > 0 or scale != 1):
                break
            if shared.state.interrupted:
                break
            shape = (img.width, img.height)
            img = self.do_upscale(img, selected_model)
            if shape == (img.width, img.height):
                break
        if img.width != dest_w or img.height != dest_h:
            img = img.resize((int(dest_w), int(dest_h)), resample=LANCZOS)
        return img

    @abstractmethod
    def load_model(self, path: str):
        pass


class UpscalerData:
    name = None
    data_path = None
    scale: int = 4
    scaler: Upscaler = None
    model: None

    def __init__(self, name: str, path: str, upscaler: Upscaler = None, scale: int = 4, model=None):
        self.name = name
        self.data_path = path
        self.local_data_path = path
        self.scaler = upscaler
        self.scale = scale
        self.model = model

    def __repr__(self):
        return f"<UpscalerData name={self.name} path={self.data_path} scale={self.scale}>"


class UpscalerNone(Upscaler):
    name = "None"
    scalers = []

    def load_model(self, path):
        pass

    def do_upscale(self, img, selected_model=None):
        return img

    def __init__(self, dirname=None):
        super().__init__(False)
        self.scalers = [UpscalerData("None", None, self)]


class UpscalerLanczos(Upscaler):
    scalers = []

    def do_upscale(self, img, selected_model=None):
        return img.resize((int(img.width * self.scale), int(img.height * self.scale)), resample=LANCZOS)

    def load_model(self, _):
        pass

    def __init__(self, dirname=None):
        super().__init__(False)
        self.name = "Lanczos"
        self.scalers = [UpscalerData("Lanczos", None, self)]


class UpscalerNearest(Upscaler):
    scalers = []

    def do_upscale(self, img, selected_model=None):
        return img.resize((int(img.width * self.scale), int(img.height * self.scale)), resample=NEAREST)

    def load_model(self, _):
        pass

    def __init__(self, dirname=None):
        super().__init__(False)
        self.name = "Nearest"
        self.scalers = [UpscalerData("Nearest", None, self)]


BUILTIN = (UpscalerNone, UpscalerLanczos, UpscalerNearest)


def builtin_upscalers() -> list:
    return [data for cls in BUILTIN for data in cls().scalers]
