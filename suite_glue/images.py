"""Image arguments as the UI and the API give them: PIL images or numpy arrays from gradio (an image-editor dict
holds it under "image"), base64 strings (data URLs too) from the API, and lists of those (one per batch image)."""
from __future__ import annotations

import base64
import binascii
import io

import numpy as np
from PIL import Image


def decode_image(value, where: str):
    """One image or None (nothing given); `ValueError` starting with `where` for anything else."""
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
            return image
        except (binascii.Error, ValueError, OSError) as exc:
            raise ValueError(f"{where} is not a base64-encoded image ({type(exc).__name__}: {exc})") from None
    raise ValueError(f"{where} must be an image (a base64 string), got {type(value).__name__}")


def decode_images(value, where: str):
    """An image argument as given: None, one image, or a list of images (each decoded)."""
    if isinstance(value, (list, tuple)):
        images = [decode_image(v, where) for v in value]
        return [i for i in images if i is not None] or None
    return decode_image(value, where)


def as_list(images) -> list:
    """A decoded image argument as a list (empty when nothing was given)."""
    if images is None:
        return []
    return list(images) if isinstance(images, list) else [images]
