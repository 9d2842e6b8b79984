"""Conditioning builder vs the official demos' formulas (numpy oracles written out here)."""
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from lib_iclight import (ICLightError, fbc_background, fc_initial_latent, fc_light_image, make_concat_spec,
                         match_batch, prepare_foreground, resize_and_center_crop)
from lib_iclight.conditioning import encode_images

RNG = np.random.default_rng(0)


def rgba(h=12, w=16):
    image = RNG.integers(0, 256, size=(h, w, 4), dtype=np.uint8)
    image[..., 3] = RNG.choice([0, 255, 40, 200], size=(h, w)).astype(np.uint8)
    return image


def demo_grey(rgb, alpha):
    """gradio_demo.run_rmbg: 127 + (img - 127 + sigma) * alpha, sigma = 0, clip, uint8."""
    out = 127 + (rgb.astype(np.float32) - 127 + 0.0) * alpha[..., None].astype(np.float32)
    return out.clip(0, 255).astype(np.uint8)


def test_alpha_grey_fill():
    image = rgba()
    got = prepare_foreground(image)
    assert got.dtype == np.uint8 and got.shape == (12, 16, 3)
    np.testing.assert_array_equal(got, demo_grey(image[..., :3], image[..., 3] / np.float32(255)))
    transparent = image[..., 3] == 0
    assert (got[transparent] == 127).all()  # fully transparent -> exactly grey 127 (0 after /127-1)
    opaque = image[..., 3] == 255
    np.testing.assert_array_equal(got[opaque], image[..., :3][opaque])


def test_mask_and_remover_and_whole_image():
    image = rgba()[..., :3]
    mask = (RNG.random((12, 16)) > 0.5).astype(np.uint8) * 255
    np.testing.assert_array_equal(prepare_foreground(image, mask=mask), demo_grey(image, mask / 255.0))
    alpha = RNG.random((12, 16)).astype(np.float32)
    np.testing.assert_array_equal(prepare_foreground(image, remover=lambda rgb: alpha), demo_grey(image, alpha))
    np.testing.assert_array_equal(prepare_foreground(image, remover="none"), image)
    opaque = np.dstack([image, np.full((12, 16), 255, np.uint8)])  # no transparency: the remover decides
    np.testing.assert_array_equal(prepare_foreground(opaque, remover=lambda rgb: alpha), demo_grey(image, alpha))


def test_rembg_used_when_installed(monkeypatch):
    alpha = np.zeros((12, 16), np.uint8)
    alpha[3:9, 4:12] = 255
    calls = []

    def remove(img, session=None, only_mask=False, **kwargs):
        calls.append((session, only_mask))
        return Image.fromarray(alpha)

    fake = types.SimpleNamespace(remove=remove, new_session=lambda name: f"session:{name}")
    monkeypatch.setitem(sys.modules, "rembg", fake)
    monkeypatch.setattr("lib_iclight.conditioning._REMBG_SESSIONS", {})
    image = rgba()[..., :3]
    np.testing.assert_array_equal(prepare_foreground(image), demo_grey(image, alpha / 255.0))
    assert calls == [("session:u2net", True)]


def test_no_foreground_or_remover_errors(monkeypatch):
    monkeypatch.setitem(sys.modules, "rembg", None)  # import fails
    with pytest.raises(ICLightError, match="(?s)rembg.*transparent.*mask"):
        prepare_foreground(rgba()[..., :3])
    with pytest.raises(ICLightError, match="needs a foreground image"):
        prepare_foreground(None)


def demo_resize_and_center_crop(image, tw, th):
    """lllyasviel/IC-Light gradio_demo.py resize_and_center_crop, from its documented behaviour: scale to cover
    (max of the two ratios), round the size, LANCZOS, then PIL's crop of the FLOAT box ((rw - W) / 2, (rh - H) / 2,
    (rw + W) / 2, (rh + H) / 2). PIL rounds each corner on its own, so with an odd margin the demo's result is one
    pixel wider/taller or narrower/shorter than asked."""
    h, w = image.shape[:2]
    s = max(tw / w, th / h)
    rw, rh = int(round(w * s)), int(round(h * s))
    resized = Image.fromarray(image).resize((rw, rh), Image.LANCZOS)
    return np.array(resized.crop(((rw - tw) / 2, (rh - th) / 2, (rw + tw) / 2, (rh + th) / 2)))


@pytest.mark.parametrize("src,dst", [((10, 20), (10, 10)), ((8, 8), (16, 12)), ((5, 7), (4, 4)),
                                     ((30, 17), (24, 40)), ((64, 48), (32, 32)), ((4, 6), (4, 5)), ((4, 8), (4, 5)),
                                     ((7, 4), (5, 4)), ((8, 4), (5, 4))])
def test_resize_and_center_crop(src, dst):
    """Ours is the demo's crop with the exact target size: the same top-left corner, so where the demo's box has
    the asked size both are equal, and otherwise they agree on every pixel they share."""
    image = RNG.integers(0, 256, size=src + (3,), dtype=np.uint8)
    got = resize_and_center_crop(image, dst[1], dst[0])
    demo = demo_resize_and_center_crop(image, dst[1], dst[0])
    assert got.shape == dst + (3,)
    assert abs(demo.shape[0] - dst[0]) <= 1 and abs(demo.shape[1] - dst[1]) <= 1
    h, w = min(demo.shape[0], dst[0]), min(demo.shape[1], dst[1])
    np.testing.assert_array_equal(got[:h, :w], demo[:h, :w])
    if demo.shape[:2] == dst:
        np.testing.assert_array_equal(got, demo)
    if src == (10, 20):  # same height: a pure centre crop of columns 5..15
        np.testing.assert_array_equal(got, image[:, 5:15])


def test_odd_crop_keeps_the_target_size():
    """Where the demo's box rounds to one pixel more (6 for 5) or less (4 for 5), ours keeps the asked size."""
    for src, demo_width in (((4, 6), 6), ((4, 8), 4)):
        image = RNG.integers(0, 256, size=src + (3,), dtype=np.uint8)
        assert demo_resize_and_center_crop(image, 5, 4).shape == (4, demo_width, 3)
        assert resize_and_center_crop(image, 5, 4).shape == (4, 5, 3)


def test_fc_light_ramps():
    left = fc_light_image("Left Light", 5, 2)
    np.testing.assert_array_equal(left[0, :, 0], [255, 191, 127, 63, 0])
    assert left.shape == (2, 5, 3) and (left == left[:1]).all() and (left[..., 0:1] == left).all()
    np.testing.assert_array_equal(fc_light_image("right", 5, 2), left[:, ::-1])
    top = fc_light_image("top", 3, 5)
    np.testing.assert_array_equal(top[:, 0, 0], [255, 191, 127, 63, 0])
    np.testing.assert_array_equal(fc_light_image("bottom", 3, 5), top[::-1])
    assert fc_light_image("None", 3, 5) is None
    for direction, W, H in [("left", 37, 11), ("top", 9, 29)]:  # vs the demo's expression
        line = np.linspace(255, 0, W if direction == "left" else H)
        image = np.tile(line, (H, 1)) if direction == "left" else np.tile(line[:, None], (1, W))
        np.testing.assert_array_equal(fc_light_image(direction, W, H), np.stack((image,) * 3, -1).astype(np.uint8))


def test_fbc_backgrounds():
    np.testing.assert_array_equal(fbc_background("left", 4, 1)[0, :, 0], [224, 160, 96, 32])
    np.testing.assert_array_equal(fbc_background("Right Light", 4, 1)[0, :, 0], [32, 96, 160, 224])
    np.testing.assert_array_equal(fbc_background("top", 1, 4)[:, 0, 0], [224, 160, 96, 32])
    np.testing.assert_array_equal(fbc_background("bottom", 1, 4)[:, 0, 0], [32, 96, 160, 224])
    assert (fbc_background("Ambient", 3, 2) == 64).all() and fbc_background("ambient", 3, 2).shape == (2, 3, 3)
    upload = RNG.integers(0, 256, size=(6, 9, 3), dtype=np.uint8)
    np.testing.assert_array_equal(fbc_background("upload", 4, 4, uploaded=upload), upload)
    np.testing.assert_array_equal(fbc_background("Use Flipped Background Image", 4, 4, uploaded=upload),
                                  upload[:, ::-1])
    np.testing.assert_array_equal(fbc_background("flip_foreground", 4, 4, foreground=upload), upload[:, ::-1])
    with pytest.raises(ICLightError, match="needs a background image: upload one"):
        fbc_background("upload", 4, 4)
    # the default source: the upload when given, else the demo's Ambient (so the defaults run without an upload)
    np.testing.assert_array_equal(fbc_background(None, 4, 4, uploaded=upload), upload)
    np.testing.assert_array_equal(fbc_background("Use Background Image, else Ambient", 3, 2),
                                  fbc_background("ambient", 3, 2))
    with pytest.raises(ICLightError, match="needs a background image"):
        make_concat_spec("fbc", [upload], 8, 8, "Use Flipped Background Image", None)
    with pytest.raises(ICLightError, match="Unknown IC-Light background source"):
        fbc_background("sideways", 4, 4)


class Posterior:
    def __init__(self, mean):
        self.mean = mean

    def mode(self):
        return self.mean

    def sample(self):  # never the right answer: the demo uses the mode
        return self.mean + 100.0


def fake_vae(x):
    """8x average pool + fixed channel mix: a deterministic stand-in for the VAE encoder."""
    mix = torch.tensor([[0.5, -0.25, 0.1], [0.2, 0.3, -0.4], [-0.6, 0.1, 0.2], [0.05, 0.05, 0.9]])
    pooled = torch.nn.functional.avg_pool2d(x, 8)
    return Posterior(torch.einsum("oc,bchw->bohw", mix, pooled))


def demo_concat(images, scale):
    """The demo: numpy2pytorch (x/127 - 1) -> vae.encode(...).latent_dist.mode() * scaling_factor."""
    x = torch.from_numpy(np.stack(images, 0)).float() / 127.0 - 1.0
    return fake_vae(x.movedim(-1, 1)).mode() * scale


def test_concat_latent_fc_and_fbc():
    fgs = [prepare_foreground(rgba(40, 24)), prepare_foreground(rgba(24, 40))]
    spec = make_concat_spec("fc", fgs, 32, 16)
    got = spec.latent(32, 16, fake_vae, 0.18215)
    want = demo_concat([resize_and_center_crop(f, 32, 16) for f in fgs], 0.18215)
    assert got.shape == (2, 4, 2, 4)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)

    spec = make_concat_spec("fbc", fgs[:1], 32, 16, "left")
    got = spec.latent(32, 16, fake_vae, 0.18215)
    fg, bg = resize_and_center_crop(fgs[0], 32, 16), fbc_background("left", 32, 16)
    c = demo_concat([fg, bg], 0.18215)
    want = torch.cat([t[None] for t in c], dim=1)  # the demo's (fg, bg) channel order
    assert got.shape == (1, 8, 2, 4)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    # hires pass: the first-pass ramp is resized with the foreground, as the demo does
    hires = spec.latent(64, 32, fake_vae, 0.18215)
    c = demo_concat([resize_and_center_crop(fgs[0], 64, 32), resize_and_center_crop(bg, 64, 32)], 0.18215)
    torch.testing.assert_close(hires, torch.cat([t[None] for t in c], dim=1), atol=1e-6, rtol=0)


def test_fc_initial_latent_and_batch_matching():
    lat = fc_initial_latent("left", 32, 16, fake_vae, 0.5)
    torch.testing.assert_close(lat, demo_concat([fc_light_image("left", 32, 16)], 0.5))
    assert fc_initial_latent("none", 32, 16, fake_vae, 0.5) is None
    one = torch.randn(1, 4, 2, 2)
    assert torch.equal(match_batch(one, 3), one.expand(3, 4, 2, 2))
    two = torch.randn(2, 4, 2, 2)
    assert match_batch(two, 2) is two
    with pytest.raises(ICLightError, match="2 foregrounds for a batch of 3"):
        match_batch(two, 3)
    # a tensor-returning encoder (already the latent) is scaled once
    assert torch.equal(encode_images([np.full((8, 8, 3), 127, np.uint8)], lambda x: x[:, :1] + 1, 2.0),
                       torch.full((1, 1, 8, 8), 2.0))


def test_concat_provider_follows_the_latent():
    from lib_iclight import ConcatProvider
    fgs = [prepare_foreground(rgba(40, 24)), prepare_foreground(rgba(24, 40))]
    spec = make_concat_spec("fbc", fgs, 32, 16, "ambient")
    calls = []

    def vae(x):
        calls.append(tuple(x.shape))
        return fake_vae(x)

    provider = ConcatProvider(spec, vae, 0.18215)
    x = torch.zeros(2, 4, 2, 4, dtype=torch.float64)
    first = provider.for_latent(x)
    assert first.shape == (2, 8, 2, 4) and first.dtype == torch.float64
    torch.testing.assert_close(first.float(), spec.latent(32, 16, fake_vae, 0.18215))
    assert not torch.equal(first[0], first[1])  # each image its own foreground
    provider.for_latent(x)
    hires = provider.for_latent(torch.zeros(2, 4, 4, 8))  # the hires pass: re-encoded at 64 x 32
    assert hires.shape == (2, 8, 4, 8) and provider.encodes == 2 and len(calls) == 2
    with pytest.raises(ICLightError, match="2 foregrounds for a batch of 3"):
        provider.for_latent(torch.zeros(3, 4, 2, 4))
