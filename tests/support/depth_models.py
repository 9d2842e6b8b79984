"""A tiny SD 2 depth model for the host double: the SD 2.1 layout with a 5-channel UNet (latent + depth),
eps-prediction (512-depth-ema is not v-prediction), conditioning_key 'hybrid', and `depth_model`: a deterministic
stand-in for the WebUI's MiDaS (image [B, 3, H, W] in [-1, 1] -> [B, 1, H, W], brighter where the image is
brighter, smoothed). The class is named as ldm's `LatentDepth2ImageDiffusion`, which v1.10.1's img2img checks for.
`webui_depth_normalisation` is v1.10.1 `depth2img_image_conditioning`'s treatment of a depth tensor, written from
its source (processing.py): bicubic resize to the latent, then min/max to [-1, 1] over the whole tensor."""
from __future__ import annotations

import copy

import torch
from torch import nn

from .generation import install_model
from .tiny_models import TinyLDM, make_unet


class MidasStandIn(nn.Module):
    def forward(self, x):
        grey = x.mean(dim=1, keepdim=True)
        return nn.functional.avg_pool2d(grey, 5, stride=1, padding=2) + 2.0


class LatentDepth2ImageDiffusion(TinyLDM):
    def __init__(self, unet):
        super().__init__(unet, "sd21", parameterization="eps")
        self.depth_model = MidasStandIn()


_CACHE = {}


def make_depth_ldm(seed: int = 0) -> LatentDepth2ImageDiffusion:
    if seed not in _CACHE:
        _CACHE[seed] = LatentDepth2ImageDiffusion(make_unet("sd21", seed, in_channels=5)).eval()
    return copy.deepcopy(_CACHE[seed])


def load_depth_model(seed: int = 0) -> LatentDepth2ImageDiffusion:
    """A fresh tiny depth model installed as the WebUI's current model (stand-in text encoder attached)."""
    return install_model(make_depth_ldm(seed))


def webui_depth_normalisation(depth: torch.Tensor, latent_hw) -> torch.Tensor:
    conditioning = torch.nn.functional.interpolate(depth, size=tuple(latent_hw), mode="bicubic", align_corners=False)
    (depth_min, depth_max) = torch.aminmax(conditioning)
    return 2. * (conditioning - depth_min) / (depth_max - depth_min) - 1.
