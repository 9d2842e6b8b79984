"""The host double's model objects follow the real ones: when c_concat reaches the UNet (ldm DiffusionWrapper,
WebUI v1.10.1 sd_models_xl.apply_model)."""
import pytest
import torch

from support.tiny_models import make_context, make_ldm


def _cond(ldm, concat_channels, batch=1):
    c = make_context(ldm.family, batch)
    return {"c_crossattn": [c], "c_concat": [torch.randn(batch, concat_channels, 8, 8)]}


def test_c_concat_joins_x_only_for_hybrid_or_concat_keys():
    """ldm.models.diffusion.ddpm.DiffusionWrapper.forward: 'concat'/'hybrid' cat c_concat to x; 'crossattn' passes
    x alone. An 8-channel UNet whose wrapper says 'crossattn' therefore fails at its first conv."""
    ldm = make_ldm("sd15", in_channels=8)
    assert ldm.model.conditioning_key == "hybrid"
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([500.0])
    cond = _cond(ldm, 4)
    with torch.no_grad():
        out = ldm.apply_model(x, t, cond)
        unet = ldm.model.diffusion_model
        want = unet(torch.cat([x] + cond["c_concat"], 1), t, context=cond["c_crossattn"][0])
    assert torch.equal(out, want)
    ldm.model.conditioning_key = "crossattn"
    with torch.no_grad(), pytest.raises(RuntimeError, match="channels"):
        ldm.apply_model(x, t, cond)


def test_plain_model_ignores_the_webuis_dummy_image_conditioning():
    """txt2img passes a [B, 5, 1, 1] zero image_cond to every model; a 'crossattn' wrapper ignores it."""
    ldm = make_ldm("sd15")
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([500.0])
    cond = _cond(ldm, 5)
    cond["c_concat"] = [torch.zeros(1, 5, 1, 1)]
    with torch.no_grad():
        out = ldm.apply_model(x, t, cond)
        want = ldm.model.diffusion_model(x, t, context=cond["c_crossattn"][0])
    assert torch.equal(out, want)


def test_sdxl_concatenates_only_for_inpainting():
    """modules/sd_models_xl.py apply_model of v1.10.1: `if self.is_sdxl_inpaint: x = cat([x] + c_concat)`."""
    assert make_ldm("sdxl", in_channels=9).is_sdxl_inpaint
    assert not make_ldm("sdxl").is_sdxl_inpaint and not make_ldm("sdxl", in_channels=8).is_sdxl_inpaint


def test_sdxl_first_stage_has_sgm_semantics():
    """sgm DiffusionEngine.encode_first_stage (generative-models 45c443b) returns scale_factor * a sample of the
    posterior (AutoencoderKLInferenceWrapper.encode), and v1.10.1 sd_models_xl.get_first_stage_encoding is the
    identity; ldm returns the posterior and scales in get_first_stage_encoding. The WebUI's img2img init latent
    (get_first_stage_encoding(encode_first_stage(x))) is the same either way."""
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    xl, sd = make_ldm("sdxl"), make_ldm("sd15")
    sd.first_stage_model = xl.first_stage_model
    sd.scale_factor = xl.scale_factor
    with torch.no_grad():
        z = xl.encode_first_stage(image)
        assert torch.is_tensor(z) and torch.equal(xl.get_first_stage_encoding(z), z)
        assert not torch.is_tensor(sd.encode_first_stage(image))
        assert torch.equal(sd.get_first_stage_encoding(sd.encode_first_stage(image)), z)
    # so the WebUI's own InstructPix2Pix conditioning (encode_first_stage(x).mode()) cannot serve SDXL: on a tensor
    # .mode() is torch.mode, a (values, indices) pair along the last dimension, not a latent
    assert not torch.is_tensor(z.mode())


def test_sdxl_conditioning_key_is_crossattn():
    """v1.10.1 sd_models_xl.extend_sdxl sets model.model.conditioning_key = 'crossattn' for every SDXL model (the
    9-channel inpainting UNet too); ldm models keep their yaml's key ('hybrid' for concat-conditioned UNets)."""
    for channels in (4, 8, 9):
        assert make_ldm("sdxl", in_channels=channels).model.conditioning_key == "crossattn"
    assert make_ldm("sd15", in_channels=8).model.conditioning_key == "hybrid"
