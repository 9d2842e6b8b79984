"""Our diffusers<->ldm UNet key map against diffusers' own converter (on the tiny real-class UNets)."""
import pytest
import torch

from lib_iclight import keymap
from support.iclight_fixtures import base_unet, to_diffusers_state_dict


@pytest.mark.parametrize("family", ["sd15", "sd21"])
def test_diffusers_to_ldm_matches_diffusers_converter(family):
    ldm_state = base_unet(family).state_dict()
    _, dif_state = to_diffusers_state_dict(ldm_state, family)
    mapping = keymap.diffusers_to_ldm(dif_state.keys())
    assert sorted(mapping.values()) == sorted(ldm_state.keys())  # a bijection onto the ldm keys
    for dif_key, ldm_key in mapping.items():
        assert torch.equal(dif_state[dif_key], ldm_state[ldm_key]), (dif_key, ldm_key)
    assert keymap.ldm_to_diffusers(ldm_state.keys()) == {v: k for k, v in mapping.items()}


def test_sd15_layout_and_known_keys():
    keys = base_unet().state_dict().keys()
    layout = keymap.layout_from_ldm(keys)
    assert layout == keymap.UNetLayout(4, 2, (True, True, True, False), (False, True, True, True), True, False)
    back = keymap.ldm_to_diffusers(keys)
    assert back["input_blocks.0.0.weight"] == "conv_in.weight"
    assert back["input_blocks.3.0.op.weight"] == "down_blocks.0.downsamplers.0.conv.weight"
    assert back["output_blocks.2.1.conv.weight"] == "up_blocks.0.upsamplers.0.conv.weight"
    assert back["output_blocks.5.2.conv.bias"] == "up_blocks.1.upsamplers.0.conv.bias"
    assert back["input_blocks.4.0.skip_connection.weight"] == "down_blocks.1.resnets.0.conv_shortcut.weight"
    assert back["middle_block.1.proj_in.weight"] == "mid_block.attentions.0.proj_in.weight"
    assert back["out.2.weight"] == "conv_out.weight" and back["time_embed.2.bias"] == "time_embedding.linear_2.bias"


def test_prefixed_and_unknown_keys():
    keys = list(base_unet().state_dict().keys())
    for prefix in ("", "diffusion_model.", "model.diffusion_model."):
        mapped = keymap.to_ldm_keys([prefix + k for k in keys])
        assert sorted(mapped) == sorted(keys) and all(v == prefix + k for k, v in mapped.items())
    with pytest.raises(KeyError, match="neither"):
        keymap.to_ldm_keys(["text_model.encoder.layers.0.mlp.fc1.weight"])
    with pytest.raises(KeyError, match="match no UNet block"):
        keymap.diffusers_to_ldm(["conv_in.weight", "down_blocks.0.resnets.0.norm1.weight",
                                 "down_blocks.0.resnets.0.bogus.weight"])
