"""The official ``hidiffusion`` on a diffusers copy of a tiny ldm UNet, as a numerical oracle.

- ``to_diffusers(unet, family)``: diffusers' own converter (``create_unet_diffusers_config_from_ldm`` +
  ``convert_ldm_unet_checkpoint``), all keys matched, fp32 eval.
- ``official_apply(dunet, model, num_timesteps, ...)``: official ``apply_hidiffusion`` on the bare UNet
  (``name_or_path`` picks the official strategy, ``_num_timesteps`` is read as the pipeline's).
- ``official_settings(...)``: patches the official module's globals (threshold dict, aggressive flag) for a
  test, restoring them after.
- ``fixed_official_shift(k)``: makes the official MSW-MSA draw (``torch.rand(1)``) pick shift index ``k``.
- ``webui_cat_hijack()``: the WebUI's ``sd_hijack_unet.th`` (``torch.cat`` resizing the first tensor to the
  skip's size) installed in ldm's openaimodel, as the WebUI does, so latent sizes not divisible by 8 run.
"""
from __future__ import annotations

import contextlib

import torch
from modules.sd_hijack_unet import TorchHijackForUnet  # the host double's copy of the WebUI's cat fix

from support.tiny_models import unet_kwargs

OFFICIAL_NAMES = {
    "sd15": "runwayml/stable-diffusion-v1-5",
    "sd21": "stabilityai/stable-diffusion-2-1-base",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
    "sdxl_turbo": "stabilityai/sdxl-turbo",
}


def to_diffusers(unet, family: str):
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (convert_ldm_unet_checkpoint,
                                                     create_unet_diffusers_config_from_ldm)
    layout = "sdxl" if family.startswith("sdxl") else family
    params = unet_kwargs(layout, in_channels=unet.in_channels)
    key = "network_config" if layout == "sdxl" else "unet_config"
    original_config = {"model": {"params": {key: {"params": params},
                                            "first_stage_config": {"params": {"ddconfig": {"ch_mult": [1, 2, 4, 4]}}}}}}
    checkpoint = {f"model.diffusion_model.{k}": v for k, v in unet.state_dict().items()}
    config = create_unet_diffusers_config_from_ldm(original_config, checkpoint)
    converted = convert_ldm_unet_checkpoint(checkpoint, config)
    dunet = UNet2DConditionModel(**config)
    missing, unexpected = dunet.load_state_dict(converted, strict=True)
    assert not missing and not unexpected
    return dunet.eval()


def official_module():
    import hidiffusion.hidiffusion as official
    return official


def official_apply(dunet, model: str, num_timesteps: int, apply_raunet=True, apply_window_attn=True):
    from hidiffusion import apply_hidiffusion
    dunet.name_or_path = OFFICIAL_NAMES[model]
    dunet._num_timesteps = num_timesteps
    apply_hidiffusion(dunet, apply_raunet=apply_raunet, apply_window_attn=apply_window_attn)
    return dunet


@contextlib.contextmanager
def official_settings(ratios: dict | None = None, aggressive: bool | None = None):
    official = official_module()
    saved_ratios = {k: dict(v) for k, v in official.switching_threshold_ratio_dict.items()}
    saved_aggressive = official.is_aggressive_raunet
    try:
        for key, (t1, t2) in (ratios or {}).items():
            official.switching_threshold_ratio_dict[key] = {"T1_ratio": t1, "T2_ratio": t2}
        if aggressive is not None:
            official.is_aggressive_raunet = aggressive
        yield official
    finally:
        official.switching_threshold_ratio_dict.clear()
        official.switching_threshold_ratio_dict.update(saved_ratios)
        official.is_aggressive_raunet = saved_aggressive


@contextlib.contextmanager
def fixed_official_shift(k: int):
    """The official code maps torch.rand(1) in (0,.25] -> shift 0, (.25,.5] -> 1, (.5,.75] -> 2, else 3."""
    value = (0.1, 0.3, 0.6, 0.9)[k]
    real = torch.rand

    def fake(*size, **kwargs):
        if size in ((1,), ((1,),)) and not kwargs:
            return torch.tensor([value])
        return real(*size, **kwargs)

    torch.rand = fake
    try:
        yield
    finally:
        torch.rand = real


@contextlib.contextmanager
def webui_cat_hijack():
    import ldm.modules.diffusionmodules.openaimodel as openaimodel
    saved = openaimodel.th
    openaimodel.th = TorchHijackForUnet()
    try:
        yield
    finally:
        openaimodel.th = saved


def official_set_step(dunet, step: int) -> int:
    """Sets every official patched module's call counter to ``step`` (= ``step`` earlier calls in this
    generation); returns how many counters were set."""
    count = 0
    for module in dunet.modules():
        if hasattr(type(module), "_parent") and hasattr(type(module), "timestep"):
            module.timestep = step
            count += 1
    return count


def minimal_diffusers_unet(layout: str):
    """A very small random diffusers UNet with the SD1.5 or SDXL block structure (same module names as the
    real ones, which is all the official strategy looks at): cheap enough to run the official step counting
    for hundreds of calls. Cross-attention dim 16."""
    from diffusers import UNet2DConditionModel
    if layout == "sd15":
        kwargs = dict(down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                      up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                      block_out_channels=(8, 16, 16, 16))
    else:
        kwargs = dict(down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                      up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                      block_out_channels=(8, 16, 16), transformer_layers_per_block=2)
    torch.manual_seed(0)
    return UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=2,
                                norm_num_groups=4, cross_attention_dim=16, attention_head_dim=2,
                                **kwargs).eval()
