"""Images from the API (base64): a decompression bomb gets the field-named error like any bad image; 16-bit and
float images are scaled to 8 bits (PIL's convert("RGB") would clip them to white/black), unreadable ranges refused."""
import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from modules import shared

from hdsuite_imports import suite_import
from support.iclight_webui import UNetSpy, encode, fc_on, folder, generate, host, script  # noqa: F401 (fixtures)

images = suite_import("suite_glue.images")
WHERE = "IC-Light: argument 'foreground' (Foreground)"


def encoded(image: Image.Image, fmt="PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


def rgb(value) -> np.ndarray:
    image = images.decode_image(value, WHERE)
    return np.asarray(image.convert("RGB"))


def test_decompression_bomb_gets_the_field_named_error(monkeypatch):
    """PIL raises DecompressionBombError above twice MAX_IMAGE_PIXELS (the limit is lowered here so the bomb is
    small); the message names the field like other bad images."""
    bomb = encoded(Image.new("L", (64, 64)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ValueError) as info:
        images.decode_image(bomb, WHERE)
    assert str(info.value).startswith(WHERE) and "4096 pixels" in str(info.value)
    assert type(info.value) is ValueError


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    values = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    got = rgb(encoded(Image.fromarray(values)))
    want = np.round(values / 257.0).astype(np.uint8)
    assert got.shape == (64, 64, 3) and np.array_equal(got[..., 0], want) and (got[..., 1:] == got[..., :1]).all()
    assert 100 < got.mean() < 155, "mid-grey on average, not clipped to white"
    as_int = Image.fromarray(values.astype(np.int32))  # Pillow 9.5 (the WebUI's) opens 16-bit PNGs as mode "I"
    assert as_int.mode == "I" and np.array_equal(images.to_8bit(as_int, WHERE), want)


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_float_images_in_unit_or_byte_range_are_scaled(scale):
    values = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    got = rgb(encoded(Image.fromarray(values * scale), "TIFF"))
    assert np.array_equal(got[..., 0], np.round(values * 255).astype(np.uint8))


@pytest.mark.parametrize("values", [np.full((8, 8), 300.0), np.full((8, 8), -2.0), np.full((8, 8), np.nan)])
def test_float_images_out_of_range_are_refused(values):
    with pytest.raises(ValueError) as info:
        images.decode_image(encoded(Image.fromarray(values.astype(np.float32)), "TIFF"), WHERE)
    assert str(info.value).startswith(WHERE) and "8-bit" in str(info.value)


def test_eight_bit_images_pass_unchanged():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 4), dtype=np.uint8), "RGBA")
    decoded = images.decode_image(encoded(image), WHERE)
    assert decoded.mode == "RGBA" and np.array_equal(np.asarray(decoded), np.asarray(image))


def test_through_the_api_arguments(script, monkeypatch):
    """The IC-Light script reads its image fields through this decoding: a bomb is refused before sampling with the
    field's name, a 16-bit foreground conditions like its 8-bit twin."""
    model = shared.sd_model
    values16 = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    with UNetSpy() as spy:
        generate(script, fc_on(foreground=encoded(Image.fromarray(values16)), remover="none"), steps=2)
    grey = np.round(values16 / 257.0).astype(np.uint8)
    want = encode(model, [np.stack([grey] * 3, -1)])[0]
    assert spy.calls and all(torch.allclose(row, want, atol=1e-6) for c in spy.calls for row in c.x[:, 4:])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with UNetSpy() as spy, pytest.raises(ValueError) as info:
        generate(script, fc_on(foreground=encoded(Image.new("RGB", (64, 64)))))
    assert str(info.value).startswith(WHERE) and spy.calls == []
