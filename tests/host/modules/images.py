"""Host double of modules.images: `resize_image` of v1.10.1 for resize_mode 0 (plain resize to width x height),
through the named upscaler from `shared.sd_upscalers` when the image grows, then LANCZOS to the exact size."""
from PIL import Image

from . import shared
from .shared import opts

LANCZOS = Image.Resampling.LANCZOS


def resize_image(resize_mode, im, width, height, upscaler_name=None):
    if resize_mode != 0:
        raise NotImplementedError("the host double reproduces resize_mode 0 only")
    upscaler_name = upscaler_name or getattr(opts, "upscaler_for_img2img", None)
    if upscaler_name is None or upscaler_name == "None" or im.mode == "L":
        return im.resize((width, height), resample=LANCZOS)
    scale = max(width / im.width, height / im.height)
    if scale > 1.0:
        upscalers = [x for x in shared.sd_upscalers if x.name == upscaler_name] or shared.sd_upscalers[:1]
        im = upscalers[0].scaler.upscale(im, scale, upscalers[0].data_path)
    if im.width != width or im.height != height:
        im = im.resize((width, height), resample=LANCZOS)
    return im
