"""Image arguments as the UI and the API give them: PIL images or numpy arrays from gradio (an image-editor dict
holds it under "image"), base64 strings (data URLs too) from the API, and lists of those (one per batch image).

Decoded API images are 8-bit: 16-bit greyscale (modes I;16*, and I as Pillow 9.5 opens 16-bit PNGs) is scaled by
1/257, float (F) images in [0, 1] or [0, 255] to 0-255 (PIL's convert("RGB") would clip them to white/black);
other ranges, and images over PIL's decompression-bomb limit, are refused with a message naming the field."""
from __future__ import annotations

import base64
import binascii
import io

import numpy as np
from PIL import Image


def decode_image(value, where: str, keep_bit_depth: bool = False):
    """One image or None (nothing given); `ValueError` starting with `where` for anything else. With
    `keep_bit_depth` a decoded API image keeps its mode (16-bit, float), else it is made 8-bit (`to_8bit`)."""
    if isinstance(value, dict):
        value = value.get("image")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (Image.Image, np.ndarray)):
        return value
    if isinstance(value, str):
        data = value.split(",", 1)[1] if value.startswith("data:") else value
        try:
            image = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
            image.load()
        except Image.DecompressionBombError as exc:
            raise ValueError(f"{where}: the image is too large to decode safely ({exc}); send a smaller one") from None
        except (binascii.Error, ValueError, OSError) as exc:
            raise ValueError(f"{where} is not a base64-encoded image ({type(exc).__name__}: {exc})") from None
        return image if keep_bit_depth else to_8bit(image, where)
    raise ValueError(f"{where} must be an image (a base64 string), got {type(value).__name__}")


_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def to_8bit(image: Image.Image, where: str) -> Image.Image:
    """16-bit and float images as 8-bit greyscale ("L"), scaled (see the module doc); other modes unchanged."""
    if image.mode not in _SIXTEEN_BIT + ("F",):
        return image
    values = np.asarray(image, dtype=np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if image.mode == "F":
        scale = 255.0 if high <= 1.0 else 1.0
        readable = np.isfinite(values).all() and low >= 0.0 and high <= 255.0
        what = f"a float image with values from {low} to {high}; 0-1 and 0-255 can be read"
    else:
        scale = 1.0 / 257.0
        readable = low >= 0.0 and high <= 65535.0
        what = f"a {image.mode} image with values from {low:.0f} to {high:.0f}; 16-bit (0-65535) can be read"
    if not readable:
        raise ValueError(f"{where} is {what}. Send an 8-bit (or 16-bit) PNG or JPEG.")
    return Image.fromarray(np.round(values * scale).astype(np.uint8))  # 2-D uint8: mode "L"


def decode_images(value, where: str, keep_bit_depth: bool = False):
    """An image argument as given: None, one image, or a list of images (each decoded)."""
    if isinstance(value, (list, tuple)):
        images = [decode_image(v, where, keep_bit_depth) for v in value]
        return [i for i in images if i is not None] or None
    return decode_image(value, where, keep_bit_depth)


def as_list(images) -> list:
    """A decoded image argument as a list (empty when nothing was given)."""
    if images is None:
        return []
    return list(images) if isinstance(images, list) else [images]
