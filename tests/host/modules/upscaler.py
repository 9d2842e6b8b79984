"""Host double of modules.upscaler: the built-in non-model upscalers of v1.10.1 (None, Lanczos, Nearest) as the
`shared.sd_upscalers` entries (UpscalerData: name, data_path, scaler) that hires fix and resize_image look up.
`Upscaler.upscale` here resizes once by `scale` (the real one loops do_upscale up to 3 times, then resizes to
multiples of 8; for these PIL upscalers one resize gives the same size)."""
from PIL import Image


class UpscalerData:
    def __init__(self, name, data_path, upscaler):
        self.name, self.data_path, self.scaler = name, data_path, upscaler


class _PilUpscaler:
    def __init__(self, name, resample):
        self.name, self.resample = name, resample

    def upscale(self, img, scale, selected_model=None):
        if self.resample is None:
            return img
        return img.resize((int(img.width * scale), int(img.height * scale)), resample=self.resample)


def builtin_upscalers() -> list:
    return [UpscalerData(name, None, _PilUpscaler(name, resample)) for name, resample in
            (("None", None), ("Lanczos", Image.Resampling.LANCZOS), ("Nearest", Image.Resampling.NEAREST))]
