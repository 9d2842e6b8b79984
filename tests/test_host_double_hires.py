"""The host double's hires fix follows v1.10.1 StableDiffusionProcessingTxt2Img (processing.py): init /
calculate_target_resolution pick the upscaler and the size, sample_hr_pass builds the image conditioning at the
upscaled size and only then crops the latent for "Resize width/height to"."""
import pytest
import torch

from modules import images, script_callbacks, shared

from support.generation import load_model, reset_host, txt2img


@pytest.fixture(autouse=True)
def _host():
    reset_host()
    load_model("sd15")
    yield
    script_callbacks.clear_callbacks()
    reset_host()


class Seen:
    """What the hires pass hands to the image-conditioning builders and what reaches the UNet."""

    def __init__(self):
        self.txt2img, self.img2img, self.unet = [], [], []

    def hook(self, p):
        txt2img, img2img = p.txt2img_image_conditioning, p.img2img_image_conditioning

        def t(x, width=None, height=None):
            self.txt2img.append(tuple(x.shape))
            return txt2img(x, width, height)

        def i(source_image, latent_image, image_mask=None, round_image_mask=True):
            self.img2img.append((tuple(source_image.shape), tuple(latent_image.shape), source_image.clone()))
            return img2img(source_image, latent_image, image_mask, round_image_mask)

        p.txt2img_image_conditioning, p.img2img_image_conditioning = t, i
        unet = p.sd_model.model.diffusion_model
        unet.register_forward_pre_hook(lambda m, args: self.unet.append(tuple(args[0].shape[-2:])))


def test_resize_to_another_aspect_ratio_crops_after_the_image_conditioning():
    """calculate_target_resolution: 64x64 -> "Resize to" 96x64 covers with 96x96 (truncate_y = 4 latent rows);
    sample_hr_pass makes the conditioning from the 12x12 latent, then crops it to 8x12 for sampling."""
    seen = Seen()
    result = txt2img(enable_hr=True, hr_resize_x=96, hr_resize_y=64, steps=2, p_hook=seen.hook)
    assert seen.txt2img == [(1, 4, 8, 8), (1, 4, 12, 12)]
    assert set(seen.unet) == {(8, 8), (8, 12)}
    assert result.latents.shape == (1, 4, 8, 12)
    assert result.extra_generation_params["Hires resize"] == "96x64"


@pytest.mark.parametrize("resize, want", [((96, 0), (96, 96)), ((0, 80), (80, 80)), ((0, 0), (96, 96))])
def test_target_sizes_that_keep_the_aspect_ratio_do_not_crop(resize, want):
    seen = Seen()
    result = txt2img(enable_hr=True, hr_scale=1.5, hr_resize_x=resize[0], hr_resize_y=resize[1], steps=2,
                     p_hook=seen.hook)
    assert seen.txt2img[1] == (1, 4, want[1] // 8, want[0] // 8) and result.latents.shape[-2:] == seen.txt2img[1][2:]


def test_non_latent_upscaler_resizes_decoded_images_and_conditions_through_img2img(monkeypatch):
    """sample/sample_hr_pass with an image upscaler: decode, images.resize_image(0, ..., upscaler_name), encode;
    the conditioning is img2img_image_conditioning(decoded [0, 1] images at the upscaled size, latent)."""
    calls = []
    resize = images.resize_image

    def spy(mode, im, width, height, upscaler_name=None):
        calls.append((mode, im.size, width, height, upscaler_name))
        return resize(mode, im, width, height, upscaler_name=upscaler_name)

    monkeypatch.setattr(images, "resize_image", spy)
    seen = Seen()
    result = txt2img(enable_hr=True, hr_upscaler="Lanczos", hr_resize_x=96, hr_resize_y=64, batch_size=2, steps=2,
                     p_hook=seen.hook)
    assert calls == [(0, (64, 64), 96, 96, "Lanczos")] * 2
    assert seen.txt2img == [(2, 4, 8, 8)]
    (source_shape, latent_shape, source), = seen.img2img
    assert source_shape == (2, 3, 96, 96) and latent_shape == (2, 4, 12, 12)
    assert 0.0 <= source.min() and source.max() <= 1.0
    assert set(seen.unet) == {(8, 8), (8, 12)} and result.latents.shape == (2, 4, 8, 12)
    assert result.extra_generation_params["Hires upscaler"] == "Lanczos"


def test_unknown_upscaler_is_refused():
    with pytest.raises(Exception, match="could not find upscaler named Sharpest"):
        txt2img(enable_hr=True, hr_upscaler="Sharpest", steps=2)
    assert [u.name for u in shared.sd_upscalers] == ["None", "Lanczos", "Nearest"]
    assert torch.is_tensor(txt2img(enable_hr=True, hr_upscaler="Latent (nearest)", steps=2).latents)
