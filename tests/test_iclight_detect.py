"""Model-kind detection from UNet state dicts (ldm, prefixed ldm and diffusers names)."""
import pytest
import torch

from lib_iclight import detect_model_kind
from support.iclight_fixtures import base_unet, to_diffusers_state_dict


def shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("family,channels,kind,base", [
    ("sd15", 4, "txt2img", "sd15"), ("sd21", 4, "txt2img", "sd2"), ("sdxl", 4, "txt2img", "sdxl"),
    ("sd15", 9, "inpaint", "sd15"), ("sdxl", 9, "inpaint", "sdxl"), ("sd21", 5, "depth", "sd2"),
    ("sd15", 12, "iclight_fbc", "sd15"), ("sdxl", 8, "edit", "sdxl"),
])
def test_families(family, channels, kind, base):
    result = detect_model_kind(shapes(base_unet(family, in_channels=channels)))
    assert (result.kind, result.base_family, result.in_channels) == (kind, base, channels)
    assert not result.ambiguous and result.candidates == (kind,)


def test_eight_channels_on_sd15_is_ambiguous():
    sd = shapes(base_unet("sd15", in_channels=8))
    result = detect_model_kind(sd)
    assert result.kind == "ambiguous" and result.ambiguous
    assert set(result.candidates) == {"edit", "iclight_fc"} and result.base_family == "sd15"
    assert "choose" in result.reason


def test_key_forms_agree():
    unet = base_unet("sd15", in_channels=12)
    ldm = detect_model_kind(shapes(unet))
    full = {"model.diffusion_model." + k: v for k, v in unet.state_dict().items()}
    full["first_stage_model.encoder.conv_in.weight"] = torch.zeros(128, 3, 3, 3)  # not the UNet's conv_in
    assert detect_model_kind(full) == ldm
    assert detect_model_kind({"diffusion_model." + k: v for k, v in shapes(unet).items()}) == ldm
    _, dif = to_diffusers_state_dict(unet.state_dict(), "sd15", in_channels=12)
    assert detect_model_kind(dif) == ldm


def _x4(**changes):
    sd = {"input_blocks.0.0.weight": (256, 7, 3, 3), "label_emb.weight": (1000, 1024),
          "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": (512, 1024)}
    sd.update(changes)
    return {k: v for k, v in sd.items() if v is not None}


def test_x4_upscaler_needs_its_features():
    result = detect_model_kind(_x4())
    assert (result.kind, result.base_family, result.model_channels) == ("upscale_x4", "sd2", 256)
    assert detect_model_kind(_x4(**{"label_emb.weight": None})).kind == "unknown"
    assert detect_model_kind(_x4(**{"input_blocks.0.0.weight": (320, 7, 3, 3)})).kind == "unknown"
    dif = {"conv_in.weight": (256, 7, 3, 3), "class_embedding.weight": (1000, 1024),
           "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight": (512, 1024)}
    assert detect_model_kind(dif).kind == "upscale_x4"


def test_unknown_and_mismatched():
    assert detect_model_kind(shapes(base_unet("sd15", in_channels=6))).kind == "unknown"
    assert detect_model_kind(shapes(base_unet("sd15", in_channels=5))).kind == "unknown"  # depth is SD 2
    assert detect_model_kind(shapes(base_unet("sdxl", in_channels=12))).kind == "unknown"  # fbc is SD 1.5
    result = detect_model_kind({"foo.weight": (1, 2)})
    assert result.kind == "unknown" and "no first convolution" in result.reason
