"""The edit-model core (lib_concat): the EDM v-prediction denoiser against diffusers' EDMEulerScheduler and
k-diffusion's Denoiser formulas, the input-image resize rule, per-family scaling, and the guidance rule."""
import math
import types

import numpy as np
import pytest
import torch

import lib_concat
from lib_concat import COSXL_EDIT, SDXL_IP2P, ConcatError, EDMVDenoiser, EditImages, combine_edit, edm_v_scalings

SIGMAS = torch.tensor([0.002, 0.03, 0.5, 1.0, 2.7, 14.6, 120.0])


def test_edm_scalings_equal_diffusers_scheduler_and_k_diffusion_formulas():
    from diffusers import EDMEulerScheduler
    from support.kdiffusion_import import import_k_diffusion
    scheduler = EDMEulerScheduler(sigma_min=0.002, sigma_max=120.0, sigma_data=1.0, prediction_type="v_prediction")
    c_skip, c_out, c_in, c_noise = edm_v_scalings(SIGMAS, 1.0)
    x, v = torch.randn(len(SIGMAS), 3), torch.randn(len(SIGMAS), 3)
    s = SIGMAS[:, None]
    torch.testing.assert_close(scheduler.precondition_inputs(x, s), x * c_in[:, None])
    torch.testing.assert_close(scheduler.precondition_noise(SIGMAS), c_noise)
    torch.testing.assert_close(scheduler.precondition_outputs(x, v, s), c_skip[:, None] * x + c_out[:, None] * v)
    # k-diffusion's layers.Denoiser (EDM F-target): same c_skip and c_in, c_out of the opposite sign (v = -F)
    k_diffusion = import_k_diffusion()
    k_skip, k_out, k_in = k_diffusion.layers.Denoiser(torch.nn.Identity(), sigma_data=1.0).get_scalings(SIGMAS)
    torch.testing.assert_close((k_skip, -k_out, k_in), (c_skip, c_out, c_in))
    # and sigma_data enters as in EDM's table 1
    c_skip5, c_out5, c_in5, _ = edm_v_scalings(torch.tensor([0.5]), 0.5)
    assert math.isclose(float(c_skip5), 0.5, rel_tol=1e-6)
    assert math.isclose(float(c_in5), 1 / math.sqrt(0.5), rel_tol=1e-6)
    assert math.isclose(float(c_out5), -0.25 / math.sqrt(0.5), rel_tol=1e-6)


class Inner:
    """Records what the denoiser hands the model: apply_model(x, t, cond)."""

    def __init__(self):
        self.calls = []

    def apply_model(self, x, t, cond=None):
        self.calls.append((x.clone(), t.clone(), cond))
        return torch.full_like(x, 0.5) + t[:, None, None, None]


def test_edm_denoiser_call_and_schedule():
    inner = Inner()
    denoiser = EDMVDenoiser(inner, 0.002, 120.0, 1.0)
    x = torch.randn(2, 4, 3, 3)
    sigma = torch.tensor([14.6, 0.5])
    out = denoiser(x, sigma, cond={"c": 1})
    fed, t, cond = inner.calls[0]
    assert cond == {"c": 1}
    torch.testing.assert_close(t, 0.25 * sigma.log())
    torch.testing.assert_close(fed, x / (sigma ** 2 + 1).sqrt()[:, None, None, None])
    v = 0.5 + t[:, None, None, None]
    s = sigma[:, None, None, None]
    torch.testing.assert_close(out, x / (s ** 2 + 1) - s / (s ** 2 + 1).sqrt() * v)
    # the schedule the WebUI reads: range ends exact, Automatic = diffusers' EDM Karras schedule, t = c_noise
    assert float(denoiser.sigmas[0]) == pytest.approx(0.002, rel=1e-7)
    assert float(denoiser.sigmas[-1]) == pytest.approx(120.0, rel=1e-7)
    assert bool((denoiser.sigmas[1:] > denoiser.sigmas[:-1]).all()) and len(denoiser.sigmas) == 1000
    from diffusers import EDMEulerScheduler
    scheduler = EDMEulerScheduler(sigma_min=0.002, sigma_max=120.0, sigma_data=1.0, prediction_type="v_prediction")
    scheduler.set_timesteps(7)
    torch.testing.assert_close(denoiser.get_sigmas(7), scheduler.sigmas)
    torch.testing.assert_close(denoiser.sigma_to_t(scheduler.sigmas[:-1]), scheduler.timesteps)
    torch.testing.assert_close(denoiser.t_to_sigma(denoiser.sigma_to_t(SIGMAS)), SIGMAS)


def test_edm_denoiser_with_webui_schedulers(monkeypatch):
    """Every v1.10.1 scheduler, with the inner-model ones (uniform, sgm_uniform, simple, normal, ddim) reading the
    EDM denoiser, gives a decreasing schedule inside the model's range (then 0, except KL Optimal which ends at
    sigma_min in v1.10.1)."""
    from modules import sd_schedulers, shared
    monkeypatch.setattr(shared, "sd_model", types.SimpleNamespace(is_sdxl=True), raising=False)
    denoiser = EDMVDenoiser(Inner(), 0.002, 120.0, 1.0)
    for scheduler in sd_schedulers.schedulers:
        if scheduler.function is None:
            continue
        kwargs = dict(n=6, sigma_min=0.002, sigma_max=120.0, device="cpu")
        if scheduler.need_inner_model:
            kwargs["inner_model"] = denoiser
        sigmas = scheduler.function(**kwargs)
        body = sigmas[:-1] if float(sigmas[-1]) == 0.0 else sigmas
        assert len(body) >= 6 and bool((body[1:] <= body[:-1]).all()), scheduler.name
        assert 0.0019 <= float(body.min()) and float(body.max()) <= 120.01, scheduler.name


def encoder(x):
    """A deterministic stand-in encoder: 8x8 mean -> 4 channels."""
    pooled = torch.nn.functional.avg_pool2d(x, 8)
    return torch.cat([pooled, pooled.mean(1, keepdim=True)], dim=1)


def test_image_latent_resize_rule_and_scaling():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)  # aspect 1.2
    images = EditImages([image], 96, 80, SDXL_IP2P, encoder, 0.13, "Edit model: argument 'image'")
    from PIL import Image
    resized = np.asarray(Image.fromarray(image).resize((96, 80), Image.LANCZOS), dtype=np.float32)
    want = encoder(torch.from_numpy(resized / 255.0 * 2 - 1).permute(2, 0, 1)[None])
    torch.testing.assert_close(images.latent(96, 80), want)  # ip2p: unscaled
    scaled = EditImages([image], 96, 80, COSXL_EDIT, encoder, 0.13, "x")
    torch.testing.assert_close(scaled.latent(96, 80), want * 0.13)  # CosXL Edit: x scale factor
    assert images.latent(192, 160).shape == (1, 4, 20, 24)  # any later size (hires)


def test_image_size_refusals_name_the_field():
    where = "Edit model: argument 'image' (Input image)"
    tall = np.zeros((100, 50, 3), np.uint8)
    with pytest.raises(ConcatError, match=r"argument 'image'.*50x100.*64x64.*aspect ratio") as info:
        EditImages([tall], 64, 64, SDXL_IP2P, encoder, 1.0, where)
    assert "64x128" in str(info.value)  # a suggestion that fits the image
    with pytest.raises(ConcatError, match="at least 16 pixels"):
        EditImages([np.zeros((8, 8, 3), np.uint8)], 64, 64, SDXL_IP2P, encoder, 1.0, where)
    with pytest.raises(ConcatError, match="#2"):
        EditImages([np.zeros((64, 64, 3), np.uint8), tall], 64, 64, SDXL_IP2P, encoder, 1.0, where)
    EditImages([np.zeros((66, 64, 3), np.uint8)], 64, 64, SDXL_IP2P, encoder, 1.0, where)  # 3% off: resized


def test_identical_images_are_encoded_once_and_mapped_per_image():
    calls = []

    def counting(x):
        calls.append(x.shape[0])
        return encoder(x)

    a, b = np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), 200, np.uint8)
    latent = EditImages([a, b, a], 64, 64, SDXL_IP2P, counting, 1.0, "x").latent(64, 64)
    assert calls == [2] and latent.shape == (3, 4, 8, 8)
    assert torch.equal(latent[0], latent[2]) and not torch.equal(latent[0], latent[1])


def test_posterior_mode_under_each_wrapper():
    from support.sgm_emulation import AutoencoderKL, AutoencoderKLInferenceWrapper
    from support.edit_models import VAE_DDCONFIG
    from support.tiny_models import randomize_
    torch.manual_seed(0)
    plain = randomize_(AutoencoderKL(VAE_DDCONFIG), 3, 0.1).eval()
    wrapped = AutoencoderKLInferenceWrapper(VAE_DDCONFIG).eval()
    wrapped.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        want = plain.encode(x).mode()
        assert not torch.equal(wrapped.encode(x), want)  # sgm's wrapper samples
        torch.testing.assert_close(lib_concat.posterior_mode(wrapped, x), want)
        torch.testing.assert_close(lib_concat.posterior_mode(plain, x), want)


def test_combine_edit_is_the_webuis_rule():
    d_c, d_i, d_u = torch.randn(3, 2, 4)
    out = combine_edit(d_c, d_i, d_u, 7.0, 1.5)
    torch.testing.assert_close(out, d_u + 7.0 * (d_c - d_i) + 1.5 * (d_i - d_u))
    # at image scale 1 it is the two-row CFG on the image-conditioned rows
    torch.testing.assert_close(combine_edit(d_c, d_i, d_u, 7.0, 1.0), d_i + 7.0 * (d_c - d_i))
