"""Edit-model fixtures: tiny SDXL / SD 1.5 InstructPix2Pix-layout models loaded the way WebUI v1.10.1 loads a
checkpoint, an sgm-layout tiny VAE, SDXL's vector conditioning, and their diffusers twins for the parity tests.

- `load_checkpoint(model, name, **extra_keys)`: v1.10.1 `sd_models.load_model` order: the checkpoint's state dict
  (here: the tiny model's, plus the full-size checkpoint's SDXL text-encoder marker key and `extra_keys`, e.g.
  CosXL's `edm_vpred.sigma_*`), `sd_models_config.find_checkpoint_config(state_dict, info)` (which the suite
  wraps), then the model gets `used_config`, `sd_checkpoint_info`, and the model_loaded callbacks fire.
- `sgm_vae(seed)`: sgm's `AutoencoderKLInferenceWrapper` (tests/support/sgm_emulation) with a tiny f=8 layout that
  diffusers' VAE converter takes.
- `sdxl_conditioner(width, height)`: `get_learned_conditioning` as v1.10.1 `sd_models_xl.get_learned_conditioning`
  and sgm's `GeneralConditioner` build it: crossattn from the double's text encoder, vector =
  [pooled text, embed(original h, w), embed(crop top, left), embed(target h, w)], each number through sgm's
  `ConcatTimestepEmbedderND` (`timestep_embedding(n, 8)`: cos then sin), crop from opts.sdxl_crop_top/left (0).
- `to_diffusers_unet` / `to_diffusers_vae`: diffusers' own converters, all keys matched.
"""
from __future__ import annotations

import math
import types

import torch

from modules import sd_models_config, shared

from .generation import install_model
from .sgm_emulation import AutoencoderKLInferenceWrapper
from .text_encoder import _embed, encode
from .tiny_models import SDXL_VECTOR_DIM, make_ldm, randomize_, unet_kwargs

SDXL_MARKER = "conditioner.embedders.1.model.ln_final.weight"
POOLED_DIM = 16
TIME_DIM = 8  # per number: SDXL_VECTOR_DIM = POOLED_DIM + 6 * TIME_DIM
SDXL_SCALE = 0.13025
VAE_DDCONFIG = dict(double_z=True, z_channels=4, resolution=64, in_channels=3, out_ch=3, ch=32, ch_mult=[1, 1, 1, 1],
                    num_res_blocks=1, attn_resolutions=[], dropout=0.0)
COSXL_KEYS = {"edm_vpred.sigma_min": torch.tensor(0.002), "edm_vpred.sigma_max": torch.tensor(120.0)}
assert POOLED_DIM + 6 * TIME_DIM == SDXL_VECTOR_DIM


def sgm_vae(seed: int = 3) -> AutoencoderKLInferenceWrapper:
    return randomize_(AutoencoderKLInferenceWrapper(VAE_DDCONFIG), seed, scale=0.1).eval()


def edit_model(family: str = "sdxl", seed: int = 0, vae: bool = False):
    """A tiny 8-channel model: 'sdxl' (sgm-emulated, vector conditioning, SDXL scale factor) or 'sd15' (ldm
    InstructPix2Pix: cond_stage_key 'edit', conditioning_key 'hybrid', as configs/instruct-pix2pix.yaml).
    `vae=True` puts the sgm-layout VAE in (else the double's deterministic stand-in)."""
    if family == "sdxl":
        model = make_ldm("sdxl", seed, in_channels=8, scale_factor=SDXL_SCALE)
    else:
        model = make_ldm("sd15", seed, in_channels=8, cond_stage_key="edit")
    if vae:
        model.first_stage_model = sgm_vae()
    return model


class CheckpointFile:
    """What the load path reads of v1.10.1's `CheckpointInfo` here: the file name and titles (the double's own
    CheckpointInfo also keeps a copy of the model for reloads, which these tests do not need)."""

    def __init__(self, name: str):
        self.name = self.title = self.short_title = name
        self.filename = f"/models/Stable-diffusion/{name}.safetensors"
        self.sha256 = None


def load_checkpoint(model, name: str, **extra_keys):
    """Load `model` as the checkpoint file `name` (module doc); returns the config the WebUI chose."""
    state = {k: v for k, v in model.state_dict().items()}
    if model.is_sdxl:
        state[SDXL_MARKER] = torch.zeros(4)
    state.update(extra_keys)
    info = CheckpointFile(name)
    config = sd_models_config.find_checkpoint_config(state, info)
    model.used_config = config
    model.sd_checkpoint_info = info
    model.sd_model_checkpoint = info.filename
    install_model(model)
    return config


def timestep_embedding(values: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """sgm `diffusionmodules.util.timestep_embedding` (no repeat): [N] -> [N, dim], cos then sin."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = values[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def pooled(texts) -> torch.Tensor:
    return torch.stack([_embed(t, POOLED_DIM, 2)[0] for t in texts])


def size_ids(width: int, height: int, crop=(0, 0)) -> list:
    """diffusers' add_time_ids order: original (h, w), crop (top, left), target (h, w)."""
    return [height, width, crop[0], crop[1], height, width]


def sdxl_conditioner(model, width: int, height: int):
    """Replace the double's SDXL text encoder of `model` by one with sgm's vector layout (module doc)."""
    crop = (shared.opts.data.get("sdxl_crop_top", 0), shared.opts.data.get("sdxl_crop_left", 0))

    def get_learned_conditioning(texts):
        texts = list(texts)
        ids = torch.tensor(size_ids(width, height, crop), dtype=torch.float32)
        sizes = timestep_embedding(ids, TIME_DIM).reshape(1, -1).expand(len(texts), -1)
        return {"crossattn": encode(texts, model.context_dim), "vector": torch.cat([pooled(texts), sizes], dim=1)}

    model.get_learned_conditioning = get_learned_conditioning
    return model


def to_diffusers_unet(unet):
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, create_unet_diffusers_config_from_ldm
    params = dict(unet_kwargs("sdxl", in_channels=unet.in_channels), num_classes="sequential",
                  adm_in_channels=SDXL_VECTOR_DIM)
    original = {"model": {"params": {"network_config": {"params": params},
                                     "first_stage_config": {"params": {"ddconfig": {"ch_mult": [1, 2, 4, 4]}}}}}}
    checkpoint = {f"model.diffusion_model.{k}": v for k, v in unet.state_dict().items()}
    config = create_unet_diffusers_config_from_ldm(original, checkpoint)
    config["addition_time_embed_dim"] = TIME_DIM  # the converter assumes SDXL's 256 per number
    dunet = UNet2DConditionModel(**config)
    missing, unexpected = dunet.load_state_dict(convert_ldm_unet_checkpoint(checkpoint, config), strict=True)
    assert not missing and not unexpected
    return dunet.eval()


def to_diffusers_vae(vae, scaling_factor: float):
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint, create_vae_diffusers_config_from_ldm
    original = {"model": {"params": {"first_stage_config": {"params": {"ddconfig": VAE_DDCONFIG}}}}}
    checkpoint = {f"first_stage_model.{k}": v for k, v in vae.state_dict().items()}
    config = create_vae_diffusers_config_from_ldm(original, checkpoint, image_size=64, scaling_factor=scaling_factor)
    dvae = AutoencoderKL(**config)
    missing, unexpected = dvae.load_state_dict(convert_ldm_vae_checkpoint(checkpoint, config), strict=True)
    assert not missing and not unexpected
    return dvae.eval()


def diffusers_pipeline(model, cosxl: bool):
    """diffusers' StableDiffusionXLInstructPix2PixPipeline on `model`'s converted UNet and VAE, no text encoders
    (the test passes embeddings), with CosXL's EDM Euler scheduler or SD's Euler scheduler."""
    from diffusers import EDMEulerScheduler, EulerDiscreteScheduler, StableDiffusionXLInstructPix2PixPipeline
    if cosxl:
        scheduler = EDMEulerScheduler(sigma_min=0.002, sigma_max=120.0, sigma_data=1.0,
                                      prediction_type="v_prediction")
    else:
        scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                           timestep_spacing="linspace")
    pipe = StableDiffusionXLInstructPix2PixPipeline(
        vae=to_diffusers_vae(model.first_stage_model, model.scale_factor), text_encoder=None, text_encoder_2=None,
        tokenizer=None, tokenizer_2=None, unet=to_diffusers_unet(model.model.diffusion_model), scheduler=scheduler,
        add_watermarker=False, is_cosxl_edit=cosxl)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def namespace(**kwargs):
    return types.SimpleNamespace(**kwargs)
