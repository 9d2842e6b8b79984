"""Full-size checkpoint key sets (names and shapes as in the released files) on the meta device: no weights.

Built from the real classes where the registries have them: the UNets as diffusers `UNet2DConditionModel`s with the
released configs, renamed to ldm / sgm keys by `lib_iclight.keymap` (SD 1.5 also directly from ldm's `UNetModel`, to
check the renaming); the VAE from ldm's Encoder / Decoder as sgm's `AutoencoderKL` holds them; the CLIP ViT-L text
encoder from transformers. OpenCLIP is not installed, so its text towers (SD 2 ViT-H, SDXL ViT-bigG) are listed by
hand from open_clip's module names (`transformer.resblocks.N.{ln_1, attn.in_proj_*, attn.out_proj, ln_2, mlp.c_fc,
mlp.c_proj}`, `ln_final`, `token_embedding`, `positional_embedding`, `text_projection`). Values are meta tensors,
except the scalars a test adds (e.g. CosXL's `edm_vpred.sigma_*`), which must be readable.
"""
from __future__ import annotations

import functools

import torch

META = torch.device("meta")


def _meta_state(module_factory, prefix: str) -> dict:
    with META:
        module = module_factory()
    return {prefix + k: v for k, v in module.state_dict().items()}


def _diffusers_unet(prefix: str, **config) -> dict:
    from diffusers import UNet2DConditionModel
    from lib_iclight import keymap
    dif = _meta_state(lambda: UNet2DConditionModel(**config), "")
    names = keymap.diffusers_to_ldm(dif.keys())
    return {prefix + names[k]: v for k, v in dif.items()}


SD15_UNET = dict(in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                 cross_attention_dim=768, attention_head_dim=8)
SD2_UNET = dict(SD15_UNET, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True)
SDXL_UNET = dict(in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280), layers_per_block=2,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
                 use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816)
SDXL_REFINER_UNET = dict(in_channels=4, out_channels=4, block_out_channels=(384, 768, 1536, 1536), layers_per_block=2,
                         down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                           "DownBlock2D"),
                         up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                         transformer_layers_per_block=4, attention_head_dim=(6, 12, 24, 24), cross_attention_dim=1280,
                         use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
                         projection_class_embeddings_input_dim=2560)


def _vae(prefix: str) -> dict:
    from .sgm_emulation import AutoencoderKL
    ddconfig = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=128, ch_mult=[1, 2, 4, 4],
                    num_res_blocks=2, attn_resolutions=[], dropout=0.0)
    return _meta_state(lambda: AutoencoderKL(ddconfig), prefix)


def _clip_l(prefix: str) -> dict:
    from transformers import CLIPTextConfig, CLIPTextModel
    return _meta_state(lambda: CLIPTextModel(CLIPTextConfig()), prefix)


def _open_clip_text(prefix: str, width: int, layers: int, projection: bool = True) -> dict:
    shape = {"positional_embedding": (77, width), "token_embedding.weight": (49408, width),
             "ln_final.weight": (width,), "ln_final.bias": (width,), "logit_scale": ()}
    if projection:
        shape["text_projection"] = (width, width)
    for i in range(layers):
        block = f"transformer.resblocks.{i}."
        shape.update({block + "ln_1.weight": (width,), block + "ln_1.bias": (width,),
                      block + "attn.in_proj_weight": (3 * width, width), block + "attn.in_proj_bias": (3 * width,),
                      block + "attn.out_proj.weight": (width, width), block + "attn.out_proj.bias": (width,),
                      block + "ln_2.weight": (width,), block + "ln_2.bias": (width,),
                      block + "mlp.c_fc.weight": (4 * width, width), block + "mlp.c_fc.bias": (4 * width,),
                      block + "mlp.c_proj.weight": (width, 4 * width), block + "mlp.c_proj.bias": (width,)})
    return {prefix + k: torch.empty(v, device=META) for k, v in shape.items()}


def widen_conv_in(state: dict, channels: int) -> dict:
    """A copy with the UNet's first convolution taking `channels` input channels."""
    key = "model.diffusion_model.input_blocks.0.0.weight"
    out = dict(state)
    conv = state[key]
    out[key] = torch.empty(conv.shape[0], channels, *conv.shape[2:], device=META)
    return out


@functools.lru_cache(maxsize=None)
def _base(kind: str) -> dict:
    unet = "model.diffusion_model."
    if kind == "sd15":
        return {**_diffusers_unet(unet, **SD15_UNET), **_vae("first_stage_model."),
                **_clip_l("cond_stage_model.transformer.")}
    if kind == "sd2":
        return {**_diffusers_unet(unet, **SD2_UNET), **_vae("first_stage_model."),
                **_open_clip_text("cond_stage_model.model.", 1024, 24)}
    if kind == "sdxl":
        return {**_diffusers_unet(unet, **SDXL_UNET), **_vae("first_stage_model."),
                **_clip_l("conditioner.embedders.0.transformer."),
                **_open_clip_text("conditioner.embedders.1.model.", 1280, 32)}
    if kind == "sdxl_refiner":
        return {**_diffusers_unet(unet, **SDXL_REFINER_UNET), **_vae("first_stage_model."),
                **_open_clip_text("conditioner.embedders.0.model.", 1280, 32)}
    raise ValueError(kind)


def checkpoint(kind: str, in_channels: int = 4, **extra) -> dict:
    """A full checkpoint's state dict of `kind` ('sd15', 'sd2', 'sdxl', 'sdxl_refiner') with its UNet taking
    `in_channels`, plus `extra` entries (e.g. {'edm_vpred.sigma_min': torch.tensor(0.002)})."""
    state = _base(kind)
    if in_channels != 4:
        state = widen_conv_in(state, in_channels)
    return {**state, **extra}


def sd15_from_ldm() -> dict:
    """SD 1.5's UNet keys straight from ldm's UNetModel (the released layout), to check the renaming above."""
    from ldm.modules.diffusionmodules.openaimodel import UNetModel
    return _meta_state(lambda: UNetModel(image_size=32, in_channels=4, out_channels=4, model_channels=320,
                                         attention_resolutions=[4, 2, 1], num_res_blocks=2, channel_mult=[1, 2, 4, 4],
                                         num_heads=8, use_spatial_transformer=True, transformer_depth=1,
                                         context_dim=768, legacy=False), "model.diffusion_model.")
