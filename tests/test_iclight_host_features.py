"""IC-Light with WebUI features that change the model or the latent under it: a hires pass that crops ("Resize
width/height to" another aspect ratio), the refiner (reloads weights mid-sampling), FP8 weight storage."""
import pytest
import torch

from modules import shared

from lib_iclight.images import resize_and_center_crop
from support.iclight_fixtures import state_hash
from support.iclight_webui import (UNetSpy, demo_foreground, encode, fc_on, folder, generate, host,  # noqa: F401
                                   rgba_image, script)


# --- hires pass that crops ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("upscaler", ["Latent", "Lanczos"])
def test_hires_resize_to_another_aspect_ratio_sees_the_cropped_concat(script, upscaler):
    """64x64, "Resize width/height to" 96x64: the WebUI upscales to 96x96, builds the image conditioning there and
    then drops 2 latent rows at the top and 2 at the bottom. The concat must be cropped the same way (before the fix
    the UNet's torch.cat failed: 12x12 concat, 8x12 latent)."""
    model = shared.sd_model
    fg = demo_foreground(rgba_image(1))
    first = encode(model, [fg])[0]
    covered = encode(model, [resize_and_center_crop(fg, 96, 96)])[0]
    with UNetSpy() as spy:
        result = generate(script, fc_on(), enable_hr=True, hr_upscaler=upscaler, hr_resize_x=96, hr_resize_y=64,
                          steps=2, denoising_strength=0.5)
    sizes = {tuple(c.x.shape[-2:]) for c in spy.calls}
    assert sizes == {(8, 8), (8, 12)} and result.latents.shape[-2:] == (8, 12)
    for c in spy.calls:
        want = first if c.x.shape[-2:] == (8, 8) else covered[:, 2:10, :]
        assert all(torch.allclose(row, want, atol=1e-6) for row in c.x[:, 4:])


def test_hires_resize_in_portrait(script):
    """Cropping columns: 64x64 to 64x96 covers with 96x96 and drops 2 latent columns on each side."""
    model = shared.sd_model
    covered = encode(model, [resize_and_center_crop(demo_foreground(rgba_image(1)), 96, 96)])[0]
    with UNetSpy() as spy:
        generate(script, fc_on(), enable_hr=True, hr_resize_x=64, hr_resize_y=96, steps=2)
    hires = [c for c in spy.calls if c.x.shape[-2:] == (12, 8)]
    assert hires and all(torch.allclose(row, covered[:, :, 2:10], atol=1e-6) for c in hires for row in c.x[:, 4:])
