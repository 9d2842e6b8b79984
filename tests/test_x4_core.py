"""SD x4 upscaler core (lib_concat.upscale_x4 / x4_models / tiling) on a tiny checkpoint with the official layout.

Parity: our single-tile upscale equals diffusers' StableDiffusionUpscalePipeline on converted weights (same seed,
noise level, steps, CFG; Euler with Karras sigmas): latents and decoded images, fp32, 1e-4 relative. Tiling: where
tiles do not overlap the tiled run equals single-tile runs of the crops with the same noise; where they overlap the
blend is a partition of unity that ramps linearly between disagreeing tiles (synthetic gradient). Loading errors
and bad settings/inputs raise ConcatError naming the fix."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from lib_concat import ConcatError, tiling
from lib_concat.upscale_x4 import Runtime, X4Settings, X4Upscaler, draw_noise
from lib_concat.x4_models import build_models, load_models
from support.x4_fixtures import diffusers_pipeline, tiny_x4_state_dict, tokenize, write_checkpoint

PROMPT, NEGATIVE = "a red house by the sea", "blurry"


@pytest.fixture(scope="module")
def state_dict():
    return tiny_x4_state_dict()


@pytest.fixture(scope="module")
def upscaler(state_dict):
    return X4Upscaler(build_models(state_dict), tokenize)


@pytest.fixture(scope="module")
def pipe(state_dict):
    return diffusers_pipeline(state_dict)


def lowres(height=32, width=48, seed=3):
    return torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def relative(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# --- parity ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("noise_level,cfg", [(30, 5.0), (250, 1.0)])
def test_single_tile_upscale_matches_diffusers_pipeline(upscaler, pipe, noise_level, cfg):
    settings = X4Settings(noise_level=noise_level, steps=3, cfg_scale=cfg, sampler="Euler", tile=64, seed=11)
    image = lowres()
    latent, out = upscaler.upscale_tensor(image, PROMPT, NEGATIVE, settings)
    assert upscaler.tiles_run == 3  # one tile per denoiser call: the single-tile path
    with torch.no_grad():
        embeds = pipe.text_encoder(tokenize([PROMPT, NEGATIVE]))[0]
        kwargs = dict(prompt_embeds=embeds[:1], negative_prompt_embeds=embeds[1:], image=(image + 1) / 2,
                      num_inference_steps=3, guidance_scale=cfg, output_type="latent")
        ref = pipe(noise_level=noise_level, generator=torch.Generator().manual_seed(11), **kwargs).images
        other = pipe(noise_level=noise_level + 40, generator=torch.Generator().manual_seed(11), **kwargs).images
        decoded = pipe.vae.decode(ref / pipe.vae.config.scaling_factor).sample
    assert latent.shape == ref.shape == (1, 4, 32, 48) and out.shape == (1, 3, 128, 192)
    assert relative(latent, ref) < 1e-4
    assert relative(other, ref) > 1e-3  # the comparison can tell another noise level apart (10x the tolerance)
    assert relative(out, decoded) < 1e-4


def test_text_encoder_matches_transformers_clip_on_converted_weights(upscaler, pipe):
    tokens = tokenize([PROMPT, "", "one two three four five six seven"])
    with torch.no_grad():
        ours, ref = upscaler.models.text(tokens), pipe.text_encoder(tokens)[0]
    assert ours.shape == ref.shape == (3, 77, 96)
    assert relative(ours, ref) < 1e-5


# --- tiling ---------------------------------------------------------------------------------------------------
def test_tiles_without_overlap_equal_single_tile_runs_of_their_crops(upscaler):
    settings = X4Settings(noise_level=40, steps=2, cfg_scale=4.0, sampler="DPM++ 2M", tile=32, overlap=0)
    image = lowres(32, 64, seed=5)
    image_noise, latent_noise = draw_noise(32, 64, seed=2)
    with torch.no_grad():
        cond, uncond = upscaler.encode_text([PROMPT, NEGATIVE]).chunk(2)
        noised = upscaler.noised_image(image, image_noise, settings.noise_level)
        tiled = upscaler.sample(noised, cond, uncond, settings, latent_noise)
        assert upscaler.tiles_run == 2 * 2  # 2 tiles x 2 denoiser calls (DPM++ 2M: one per step)
        tiled_image = upscaler.decode(tiled, settings)
        whole = X4Settings(**{**settings.__dict__, "tile": 64})
        for xs in (slice(0, 32), slice(32, 64)):
            single = upscaler.sample(noised[..., xs], cond, uncond, whole, latent_noise[..., xs])
            assert upscaler.tiles_run == 2
            torch.testing.assert_close(tiled[..., xs], single, atol=1e-6, rtol=0)
            ixs = slice(xs.start * 4, xs.stop * 4)
            torch.testing.assert_close(tiled_image[..., ixs], upscaler.decode(single, whole), atol=1e-6, rtol=0)
    # the tiles are not the whole image's run: the UNet sees across the seam when untiled
    assert not torch.allclose(upscaler.sample(noised, cond, uncond, whole, latent_noise), tiled, atol=1e-4)


def gradient(height, width):
    y = torch.linspace(0, 1, height, dtype=torch.float64)[:, None]
    x = torch.linspace(0, 2, width, dtype=torch.float64)[None, :]
    return (y + x)[None, None].float()


def test_blend_reproduces_a_gradient_that_all_tiles_agree_on():
    image = gradient(40, 72)
    tiles = tiling.plan(40, 72, tile=24, overlap=8, multiple=8)
    assert len(tiles) > 4 and any(t.left or t.top for t in tiles)
    out = tiling.blend(tiles, lambda t: image[(..., *t.box())], image.shape)
    torch.testing.assert_close(out, image, atol=1e-6, rtol=0)
    up = torch.nn.functional.interpolate(image, scale_factor=4, mode="nearest")  # the decoder's 4x grid
    out = tiling.blend(tiles, lambda t: up[(..., *t.box(4))], up.shape, scale=4)
    torch.testing.assert_close(out, up, atol=1e-6, rtol=0)


def test_seams_between_disagreeing_tiles_ramp_linearly_over_the_overlap():
    image = gradient(24, 80)
    tiles = tiling.plan(24, 80, tile=32, overlap=16, multiple=8)
    offsets = {id(t): 0.5 * i for i, t in enumerate(tiles)}  # every tile off from its neighbour by 0.5

    def run(t):
        return image[(..., *t.box())] + offsets[id(t)]

    blended = tiling.blend(tiles, run, image.shape)
    hard = tiling.blend(tiling.plan(24, 80, tile=32, overlap=0, multiple=8),
                        lambda t: image[(..., *t.box())] + 0.5 * (t.x0 // 32), image.shape)
    step = 2.0 / 79  # the gradient's own step per column
    blended_jumps = (blended[..., 1:] - blended[..., :-1]).abs().max().item()
    hard_jumps = (hard[..., 1:] - hard[..., :-1]).abs().max().item()
    assert hard_jumps > 0.5  # unblended: the full offset at the seam
    assert blended_jumps <= step + 0.5 / 16 + 1e-6  # blended: spread over the 16-pixel overlap
    # away from every overlap the tile's own value is kept
    first = tiles[0]
    torch.testing.assert_close(blended[..., :first.x1 - first.right], run(first)[..., :first.x1 - first.right])


def test_overlapping_tiles_upscale_has_no_seam_where_the_tiles_meet(upscaler):
    """A smooth input upscaled in overlapping tiles: across each tile boundary the output changes no more than
    it does elsewhere (the decoder's and UNet's tile outputs are ramped into each other)."""
    x = torch.linspace(-0.8, 0.8, 64)
    image = (x[None, None, None, :] * torch.ones(1, 3, 32, 1))
    settings = X4Settings(noise_level=10, steps=2, cfg_scale=1.0, sampler="Euler", tile=32, overlap=8)
    out = upscaler.upscale_tensor(image, PROMPT, NEGATIVE, settings)[1]
    hard = upscaler.upscale_tensor(image, PROMPT, NEGATIVE, X4Settings(**{**settings.__dict__, "overlap": 0}))[1]
    columns = lambda o: (o[..., 1:] - o[..., :-1]).abs().mean(dim=(0, 1, 2))  # noqa: E731
    seam = 32 * 4 - 1  # the hard tiles meet between output columns 127 and 128
    assert columns(hard)[seam] > 2 * columns(hard).median()  # the unblended seam shows
    assert columns(out)[seam] < 1.5 * columns(out).median()


# --- inputs and files -----------------------------------------------------------------------------------------
def test_sizes_that_are_not_multiples_of_8_are_padded_and_cropped_back(upscaler):
    image = Image.fromarray((np.random.default_rng(0).random((21, 27, 3)) * 255).astype(np.uint8))
    out = upscaler.upscale(image, PROMPT, NEGATIVE, X4Settings(steps=1, tile=32, overlap=8))
    assert out.size == (108, 84) and out.mode == "RGB"


@pytest.mark.parametrize("changes,needle", [
    ({"noise_level": 351}, "'noise level' must be between 0 and 350"),
    ({"steps": 0}, "'steps' must be at least 1"),
    ({"sampler": "Euler a"}, "'sampler' must be one of"),
    ({"tile": 36}, "'tile size' must be a multiple of 8"),
    ({"overlap": 72}, "'tile overlap' must be a multiple of 8 from 0 to half the tile size"),
])
def test_bad_settings_are_refused_before_sampling(upscaler, changes, needle):
    upscaler.tiles_run = 0
    with pytest.raises(ConcatError, match=needle.replace("(", r"\(")):
        upscaler.upscale_tensor(lowres(), PROMPT, NEGATIVE, X4Settings(**changes))
    assert upscaler.tiles_run == 0  # refused before the UNet ran


def test_input_too_small_is_refused(upscaler):
    upscaler.tiles_run = 0
    with pytest.raises(ConcatError, match="12x40 pixels; it needs at least 16x16"):
        upscaler.upscale_tensor(lowres(40, 12), PROMPT, NEGATIVE, X4Settings())
    assert upscaler.tiles_run == 0


def test_interrupt_returns_the_current_estimate_after_that_step(state_dict):
    calls = []
    runtime = Runtime(interrupted=lambda: True, on_step=lambda i, n: calls.append((i, n)))
    upscaler = X4Upscaler(build_models(state_dict), tokenize, runtime)
    latent, out = upscaler.upscale_tensor(lowres(), PROMPT, NEGATIVE, X4Settings(steps=5, tile=64))
    assert calls == [(1, 5)] and upscaler.tiles_run == 1
    assert torch.isfinite(out).all()


def test_load_from_file(tmp_path, state_dict):
    models = load_models(write_checkpoint(tmp_path / "x4.safetensors", state_dict))
    assert models.unet.in_channels == 7 and models.scale_factor == 0.08333 and models.max_noise_level == 350
    reference = build_models(state_dict)
    for ours, ref in zip(models.modules(), reference.modules()):
        for (name, a), (_, b) in zip(ours.state_dict().items(), ref.state_dict().items()):
            assert torch.equal(a, b), name


def _edited(state_dict, drop=(), **replace):
    sd = {k: v for k, v in state_dict.items() if not k.startswith(tuple(drop))}
    sd.update(replace)
    return sd


@pytest.mark.parametrize("name,make,needle", [
    ("x4.ckpt", None, "is not a .safetensors file"),
    ("missing.safetensors", "missing", "was not found; put x4-upscaler-ema.safetensors"),
    ("corrupt.safetensors", "corrupt", "could not be read .*download it again"),
    ("depth.safetensors", lambda sd: _edited(sd, **{"model.diffusion_model.input_blocks.0.0.weight":
                                                    torch.zeros(32, 5, 3, 3)}),
     "its UNet takes 5 input channels, the x4 upscaler takes 7"),
    ("nolabel.safetensors", lambda sd: _edited(sd, drop=["model.diffusion_model.label_emb"]),
     "without the noise-level embedding"),
    ("notext.safetensors", lambda sd: _edited(sd, drop=["cond_stage_model."]), "has no text encoder"),
    ("novae.safetensors", lambda sd: _edited(sd, drop=["first_stage_model.decoder."]), "has no VAE decoder"),
    ("f8.safetensors", lambda sd: _edited(sd, **{"first_stage_model.decoder.up.3.block.0.conv2.weight":
                                                 torch.zeros(32, 32, 3, 3)}),
     "has a VAE that scales by 8, the x4 upscaler's scales by 4"),
    ("short.safetensors", lambda sd: _edited(sd, drop=["model.diffusion_model.out."]), "lacks .* UNet tensors|layout"),
])
def test_bad_files_give_clear_errors(tmp_path, state_dict, name, make, needle):
    path = tmp_path / name
    if make == "corrupt":
        path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    elif callable(make):
        write_checkpoint(path, make(state_dict))
    elif make is None:
        path.write_bytes(b"pickle")
    with pytest.raises(ConcatError, match=needle) as info:
        load_models(str(path))
    assert os.path.basename(str(path)) in str(info.value) and str(info.value).startswith("SD x4 upscaler: ")


def test_full_size_layout_is_read_from_the_shapes_as_the_official_yaml_has_it():
    """The official x4-upscaling.yaml sizes built on the meta device: the loader infers the same config back."""
    from bench.upscale_cuda import DECODER, UNET, real_models
    from lib_concat.x4_models import decoder_config, unet_config
    from lib_concat.x4_text import TextConfig
    models = real_models("meta")
    assert unet_config(models.unet.state_dict()) == UNET
    vae = {**{"decoder." + k: v for k, v in models.decoder.decoder.state_dict().items()},
           **{"post_quant_conv." + k: v for k, v in models.decoder.post_quant_conv.state_dict().items()}}
    assert decoder_config(vae) == DECODER
    assert TextConfig.from_state_dict(models.text.state_dict()) == TextConfig(49408, 1024, 77, 24, 4096)
