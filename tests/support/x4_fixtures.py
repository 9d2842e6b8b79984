"""A tiny SD x4 upscaler checkpoint (the official file's layout, a few channels) and its diffusers twin.

`tiny_x4_state_dict()` builds, from the real classes, what `x4-upscaler-ema.safetensors` holds:
- `model.diffusion_model.*`: ldm `UNetModel` with the x4 config (7 input channels, noise-level class embedding of
  1000 labels, channel_mult [1, 2, 2, 4], attention at levels 1-3 with self-attention disabled at levels 1-2, 8
  heads, linear projections) at 32 base channels and context 96;
- `first_stage_model.*`: ldm `Encoder` / `Decoder` with f = 4 (ch_mult [1, 1, 2]) and the quant convs;
- `cond_stage_model.model.*`: an OpenCLIP text tower (width 96, 1 head, 2 blocks, vocabulary 1000).
Every parameter seeded N(0, scale^2) (ldm zero-inits its output convs).
`tokenize` stands in for `open_clip.tokenize` (start 998, end 999, words hashed to 1..996, padded with 0).
`diffusers_pipeline(sd)` converts the same tensors with diffusers' single-file utilities into a
`StableDiffusionUpscalePipeline` (Euler with Karras sigmas, v-prediction, the x4 schedules).
"""
from __future__ import annotations

import functools
import zlib

import torch
from torch import nn

from .tiny_models import randomize_

VOCAB, WIDTH, LAYERS, CONTEXT = 1000, 96, 2, 77
UNET_KWARGS = dict(image_size=128, in_channels=7, out_channels=4, model_channels=32, attention_resolutions=[2, 4, 8],
                   num_res_blocks=2, channel_mult=[1, 2, 2, 4], disable_self_attentions=[True, True, True, False],
                   disable_middle_self_attn=False, num_heads=8, use_spatial_transformer=True, transformer_depth=1,
                   context_dim=WIDTH, legacy=False, use_linear_in_transformer=True, num_classes=1000,
                   use_checkpoint=False)
DDCONFIG = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=32, ch_mult=[1, 1, 2],
                num_res_blocks=1, attn_resolutions=[], dropout=0.0)
SCALE_FACTOR = 0.08333


def tokenize(texts, context_length: int = CONTEXT) -> torch.Tensor:
    out = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, text in enumerate(texts):
        ids = [VOCAB - 2] + [1 + zlib.crc32(w.encode()) % (VOCAB - 3) for w in text.split()][:context_length - 2]
        ids.append(VOCAB - 1)
        out[i, :len(ids)] = torch.tensor(ids)
    return out


def _prefixed(prefix: str, module: nn.Module) -> dict:
    return {prefix + k: v.detach().clone() for k, v in module.state_dict().items()}


@functools.lru_cache(maxsize=None)
def _cached_state_dict(seed: int) -> dict:
    from ldm.modules.diffusionmodules.model import Decoder, Encoder
    from ldm.modules.diffusionmodules.openaimodel import UNetModel
    from lib_concat.x4_text import OpenCLIPText, TextConfig

    unet = randomize_(UNetModel(**UNET_KWARGS), seed)
    vae = nn.Module()
    vae.encoder, vae.decoder = Encoder(**DDCONFIG), Decoder(**DDCONFIG)
    vae.quant_conv, vae.post_quant_conv = nn.Conv2d(8, 8, 1), nn.Conv2d(4, 4, 1)
    randomize_(vae, seed + 1, scale=0.08)
    text = randomize_(OpenCLIPText(TextConfig(VOCAB, WIDTH, CONTEXT, LAYERS, 4 * WIDTH)), seed + 2, scale=0.1)
    sd = {**_prefixed("model.diffusion_model.", unet), **_prefixed("first_stage_model.", vae),
          **_prefixed("cond_stage_model.model.", text)}
    sd["cond_stage_model.model.logit_scale"] = torch.tensor(4.6)
    return sd


def tiny_x4_state_dict(seed: int = 0) -> dict:
    """A fresh copy of the tiny checkpoint's tensors (ldm key names)."""
    return {k: v.clone() for k, v in _cached_state_dict(seed).items()}


def write_checkpoint(path, sd=None) -> str:
    from safetensors.torch import save_file
    save_file(sd if sd is not None else tiny_x4_state_dict(), str(path))
    return str(path)


def original_config() -> dict:
    """The parts of x4-upscaling.yaml diffusers' converters read, with the tiny sizes."""
    return {"model": {"params": {"unet_config": {"params": dict(UNET_KWARGS)}, "scale_factor": SCALE_FACTOR,
                                 "first_stage_config": {"params": {"embed_dim": 4, "ddconfig": dict(DDCONFIG)}}}}}


def diffusers_models(sd: dict):
    """(UNet2DConditionModel, AutoencoderKL, CLIPTextModel) converted from the ldm tensors, fp32, eval."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint,
                                                     convert_open_clip_checkpoint,
                                                     create_unet_diffusers_config_from_ldm,
                                                     create_vae_diffusers_config_from_ldm)
    from transformers import CLIPTextConfig, CLIPTextModel

    config = original_config()
    unet_config = create_unet_diffusers_config_from_ldm(config, sd)
    unet = UNet2DConditionModel(**unet_config)
    unet.load_state_dict(convert_ldm_unet_checkpoint(sd, unet_config))
    vae_config = create_vae_diffusers_config_from_ldm(config, sd)
    vae = AutoencoderKL(**vae_config)
    vae.load_state_dict(convert_ldm_vae_checkpoint(sd, vae_config))
    # SD 2 reads the penultimate OpenCLIP block: the diffusers text model has one block fewer, its last hidden
    # state (after final_layer_norm) is then what ldm's FrozenOpenCLIPEmbedder(layer="penultimate") returns
    text = CLIPTextModel(CLIPTextConfig(vocab_size=VOCAB, hidden_size=WIDTH, intermediate_size=4 * WIDTH,
                                        num_hidden_layers=LAYERS - 1, num_attention_heads=1,
                                        max_position_embeddings=CONTEXT, hidden_act="gelu", projection_dim=WIDTH))
    converted = convert_open_clip_checkpoint(text, sd)
    wanted = text.state_dict()
    text.load_state_dict({k: v for k, v in converted.items() if k in wanted}, strict=False)
    missing = [k for k in wanted if k not in converted and "position_ids" not in k]
    assert not missing, missing
    return unet.eval(), vae.eval(), text.eval()


def diffusers_pipeline(sd: dict):
    from diffusers import DDPMScheduler, EulerDiscreteScheduler, StableDiffusionUpscalePipeline
    unet, vae, text = diffusers_models(sd)
    schedule = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="scaled_linear")
    pipe = StableDiffusionUpscalePipeline(
        vae=vae, text_encoder=text, tokenizer=None, unet=unet, low_res_scheduler=DDPMScheduler(**schedule),
        scheduler=EulerDiscreteScheduler(**schedule, prediction_type="v_prediction", use_karras_sigmas=True),
        max_noise_level=350)
    pipe.set_progress_bar_config(disable=True)
    return pipe
