"""Depth maps (lib_concat.depth): our conditioning equals the WebUI's treatment of a depth tensor, written from
v1.10.1 `depth2img_image_conditioning` (bicubic to the latent size, then min/max to [-1, 1]), for 8-bit, 16-bit,
float and RGB maps; invert; one map per image; bad maps refused with a message."""
import numpy as np
import pytest
import torch
from PIL import Image

from lib_concat import ConcatError, DepthSpec, depth_array, depth_provider
from support.depth_models import webui_depth_normalisation


def smooth_map(height=48, width=40, seed=0, scale=65535) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    field = np.sin(x / 7.0 + rng.random() * 3) + np.cos(y / 5.0 + rng.random() * 3) + 0.3 * rng.random((height, width))
    field = (field - field.min()) / (field.max() - field.min())
    return np.round(field * scale)


def reference(values: np.ndarray, hw) -> torch.Tensor:
    return webui_depth_normalisation(torch.from_numpy(values).float()[None, None], hw)


@pytest.mark.parametrize("hw", [(8, 8), (6, 10), (12, 5)])
def test_16_bit_map_conditions_as_the_webui_normalises_midas_output(hw):
    values = smooth_map()
    image = Image.fromarray(values.astype(np.uint16))  # 16-bit greyscale (I;16)
    assert image.mode in ("I;16", "I")
    ours = DepthSpec.from_images([image]).latent(*hw)
    assert ours.shape == (1, 1, *hw)
    torch.testing.assert_close(ours, reference(values, hw), atol=1e-6, rtol=0)
    assert ours.min().item() == -1.0 and ours.max().item() == 1.0
    # the 16 bits matter: the same map cut to 8 bits conditions differently
    eight_bit = np.round(values / 257.0)
    assert (reference(eight_bit, hw) - ours).abs().max() > 1e-3


def test_8_bit_rgb_float_and_array_forms_agree():
    values = smooth_map(scale=255)
    grey = Image.fromarray(values.astype(np.uint8), "L")
    rgb = Image.merge("RGB", [grey] * 3)
    rgba = Image.merge("RGBA", [grey] * 3 + [Image.new("L", grey.size, 128)])
    as_float = Image.fromarray((values / 255.0).astype(np.float32), "F")
    expected = reference(values, (8, 8))
    for form in (grey, rgb, rgba, as_float, values.astype(np.uint8), np.stack([values] * 3, -1)):
        torch.testing.assert_close(DepthSpec.from_images([form]).latent(8, 8), expected, atol=1e-5, rtol=0)


def test_colour_maps_use_rec601_luma_in_floating_point():
    rgb = np.random.default_rng(1).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(depth_array(Image.fromarray(rgb)), luma)


def test_invert_negates_which_equals_normalising_the_inverted_map():
    values = smooth_map()
    plain = DepthSpec.from_images([Image.fromarray(values.astype(np.uint16))]).latent(8, 8)
    inverted = DepthSpec.from_images([Image.fromarray(values.astype(np.uint16))], invert=True).latent(8, 8)
    torch.testing.assert_close(inverted, -plain)
    torch.testing.assert_close(inverted, reference(65535 - values, (8, 8)), atol=1e-5, rtol=0)


def test_one_map_per_image_each_normalised_on_its_own():
    a, b = smooth_map(seed=1), np.round(smooth_map(seed=2) * 0.25 + 1000)  # another range: per-map min/max
    spec = DepthSpec.from_images([Image.fromarray(a.astype(np.uint16)), Image.fromarray(b.astype(np.uint16))])
    out = spec.build(64, 48)  # pixels -> latent 6 x 8
    assert out.shape == (2, 1, 6, 8)
    torch.testing.assert_close(out[:1], reference(a, (6, 8)), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1:], reference(b, (6, 8)), atol=1e-6, rtol=0)


def test_provider_maps_rows_per_image_and_refuses_a_mismatch():
    one = depth_provider(DepthSpec.from_images([smooth_map()]))
    x = torch.zeros(3, 4, 8, 8, dtype=torch.float64)
    out = one.for_latent(x)
    assert out.shape == (3, 1, 8, 8) and out.dtype == torch.float64 and torch.equal(out[0], out[2])
    two = depth_provider(DepthSpec.from_images([smooth_map(seed=1), smooth_map(seed=2)]))
    assert two.for_latent(torch.zeros(2, 4, 8, 8)).shape == (2, 1, 8, 8)
    with pytest.raises(ConcatError, match="Depth got 2 depth maps for a batch of 3 images"):
        two.for_latent(x)
    two.for_latent(torch.zeros(2, 4, 16, 16))
    assert two.builds == 2  # one build per size (first pass, hires pass)


@pytest.mark.parametrize("maps,needle", [
    ([], "give a depth map"),
    ([np.full((8, 8), 7.0)], "the depth map is flat \\(every pixel 7\\)"),
    ([np.zeros((8, 8, 5))], "greyscale or RGB image, got shape"),
    ([np.array([[1.0, np.nan], [0.0, 2.0]])], "NaN or infinite"),
    (["not an image"], "must be an image, got str"),
])
def test_bad_maps_are_refused_with_a_message(maps, needle):
    with pytest.raises(ConcatError, match=needle):
        DepthSpec.from_images(maps)
