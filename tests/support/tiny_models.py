"""Tiny seeded fp32 models built from the real classes (ldm `UNetModel`, k-diffusion denoisers).

Layouts keep the real block structure (so module indices such as ``input_blocks[3][0].op`` mean the
same thing as in the full models) with few channels:

- SD 1.5: 4 levels (1,2,4,4), 2 res blocks, attention at levels 0-2, conv projections, context 768.
- SD 2.1: as SD 1.5 with linear projections, head channels instead of heads, context 1024, v-prediction.
- SDXL:   3 levels (1,2,4), 2 res blocks, attention at levels 1-2 with depth 2, linear projections,
          context 2048; the ldm classes with sgm's behaviour emulated (``sgm_emulation``: which sgm
          attributes and call signatures our cores rely on, checked against the sgm source the WebUI pins):
          SpatialTransformer takes one context tensor for all its blocks, BasicTransformerBlock passes
          ``additional_tokens`` / ``n_times_crossframe_attn_in_self`` to attn1. SDXL's "vector" conditioning:
          the ldm class has no ``adm`` input, so the UNet is built class-conditional ("continuous") and its
          ``label_emb`` replaced by sgm's "sequential" one, Sequential(Sequential(Linear(V, T), SiLU,
          Linear(T, T))); ``y`` carries the vector. ``TinyLDM.apply_model`` calls it as the WebUI's sgm
          ``OpenAIWrapper`` does: ``unet(x, timesteps=t, context=c, y=vector)`` with one context tensor.

``TinyLDM`` mimics what the WebUI's k-diffusion path uses of ``LatentDiffusion``: ``apply_model``,
``alphas_cumprod``, ``parameterization``, ``model.diffusion_model``, ``model.conditioning_key``,
the family flags, and a deterministic stand-in VAE (``encode_first_stage`` / ``decode_first_stage``; SDXL with sgm's
semantics: ``encode_first_stage`` returns the scaled latent, ``get_first_stage_encoding`` is the identity).
"""
from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from ldm.modules.diffusionmodules.openaimodel import UNetModel

from .sgm_emulation import sequential_label_emb, to_sgm

CONTEXT_DIM = {"sd15": 768, "sd21": 1024, "sdxl": 2048}
SDXL_VECTOR_DIM = 64
TOKENS = 77


@dataclasses.dataclass(frozen=True)
class Layout:
    family: str
    kwargs: dict
    depth: int = 1


def _layout(family: str, in_channels: int = 4, model_channels: int = 32) -> Layout:
    common = dict(image_size=32, in_channels=in_channels, out_channels=4, model_channels=model_channels,
                  num_res_blocks=2, use_spatial_transformer=True, legacy=False, use_checkpoint=False)
    if family == "sd15":
        return Layout(family, dict(common, attention_resolutions=[4, 2, 1], channel_mult=[1, 2, 4, 4],
                                   num_heads=2, transformer_depth=1, context_dim=CONTEXT_DIM["sd15"]))
    if family == "sd21":
        return Layout(family, dict(common, attention_resolutions=[4, 2, 1], channel_mult=[1, 2, 4, 4],
                                   num_head_channels=16, transformer_depth=1, use_linear_in_transformer=True,
                                   context_dim=CONTEXT_DIM["sd21"]))
    if family == "sdxl":
        return Layout(family, dict(common, attention_resolutions=[4, 2], channel_mult=[1, 2, 4],
                                   num_head_channels=16, transformer_depth=2, use_linear_in_transformer=True,
                                   context_dim=[CONTEXT_DIM["sdxl"]] * 2), depth=2)
    raise ValueError(f"unknown family {family!r}")


def unet_kwargs(family: str, in_channels: int = 4) -> dict:
    """The ldm ``UNetModel`` keyword arguments of a tiny layout (also the ldm yaml ``params``)."""
    return dict(_layout(family, in_channels).kwargs)


def randomize_(module: nn.Module, seed: int, scale: float = 0.05) -> nn.Module:
    """Fill every parameter with seeded N(0, scale²): ldm zero-inits its output convs, which would
    make every comparison pass vacuously."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in sorted(module.named_parameters()):
            param.copy_(torch.randn(param.shape, generator=gen) * scale)
    return module


def make_unet(family: str = "sd15", seed: int = 0, in_channels: int = 4, vector: bool = False) -> UNetModel:
    """A seeded random tiny ldm UNet of ``family`` ('sd15', 'sd21', 'sdxl'), eval mode, fp32.

    ``vector=True`` (SDXL only) adds the emulated ADM/vector embedding described in the module doc."""
    layout = _layout(family, in_channels)
    kwargs = dict(layout.kwargs)
    if vector:
        if family != "sdxl":
            raise ValueError("the vector embedding is an SDXL feature")
        kwargs["num_classes"] = "continuous"
    unet = UNetModel(**kwargs)
    if vector:
        unet.label_emb = sequential_label_emb(SDXL_VECTOR_DIM, unet.time_embed[0].out_features)
    if family == "sdxl":
        to_sgm(unet)
    return randomize_(unet, seed).eval()


def make_context(family: str, batch: int = 1, seed: int = 1, tokens: int = TOKENS) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, tokens, CONTEXT_DIM[family], generator=gen)


def linear_alphas_cumprod(steps: int = 1000) -> torch.Tensor:
    """The SD 1.x/2.x/XL 'scaled linear' beta schedule (0.00085 to 0.012), as alphas_cumprod."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float32)


class _Posterior:
    """Deterministic stand-in for ldm's DiagonalGaussianDistribution (zero variance)."""

    def __init__(self, mean):
        self.mean = mean

    def mode(self):
        return self.mean

    def sample(self):
        return self.mean


class TinyVAE(nn.Module):
    """Deterministic 8x stand-in VAE: encode = 8x8 average pool + 1x1 conv, decode = 1x1 conv + nearest 8x."""

    def __init__(self, seed: int = 7, latent_channels: int = 4):
        super().__init__()
        self.enc = nn.Conv2d(3, latent_channels, 1)
        self.dec = nn.Conv2d(latent_channels, 3, 1)
        randomize_(self, seed, scale=0.5)

    def encode(self, image):
        return _Posterior(self.enc(nn.functional.avg_pool2d(image, 8)))

    def decode(self, z):
        return torch.tanh(nn.functional.interpolate(self.dec(z), scale_factor=8, mode="nearest"))


class _DiffusionWrapper(nn.Module):
    def __init__(self, unet, conditioning_key):
        super().__init__()
        self.diffusion_model = unet
        self.conditioning_key = conditioning_key


class TinyLDM(nn.Module):
    """What the WebUI reads of an ldm ``LatentDiffusion`` / sgm ``DiffusionEngine``, around a tiny UNet."""

    def __init__(self, unet: UNetModel, family: str, parameterization: str = "eps",
                 cond_stage_key: str = "txt", scale_factor: float = 0.18215):
        super().__init__()
        # ldm: 'hybrid' for concat-conditioned UNets (their yaml); SDXL: 'crossattn' always (v1.10.1
        # sd_models_xl.extend_sdxl sets it for every SDXL model)
        conditioning_key = "hybrid" if unet.in_channels != 4 and family != "sdxl" else "crossattn"
        self.model = _DiffusionWrapper(unet, conditioning_key)
        self.family = family
        self.parameterization = parameterization
        self.cond_stage_key = cond_stage_key
        self.scale_factor = scale_factor
        self.latent_channels = 4
        self.first_stage_model = TinyVAE()
        self.register_buffer("alphas_cumprod", linear_alphas_cumprod())
        self.is_sd1 = family == "sd15"
        self.is_sd2 = family == "sd21"
        self.is_sdxl = family == "sdxl"
        self.is_ssd = False
        self.is_sdxl_inpaint = self.is_sdxl and unet.in_channels == 9
        self.context_dim = CONTEXT_DIM[family]

    @property
    def device(self):
        return self.alphas_cumprod.device

    @property
    def dtype(self):
        return torch.float32

    def apply_model(self, x, t, cond):
        """x [B,4,h,w], t [B] (float timesteps), cond {'c_crossattn': [c] | 'crossattn': c, 'vector', 'c_concat': [img]}."""
        unet = self.model.diffusion_model
        context = cond["crossattn"] if "crossattn" in cond else torch.cat(cond["c_crossattn"], 1)
        if self._joins_concat():
            x = torch.cat([x] + list(cond["c_concat"]), dim=1)
        if self.is_sdxl:  # sd_models_xl.apply_model -> sgm OpenAIWrapper.forward
            y = cond["vector"] if getattr(unet, "num_classes", None) is not None else None
            return unet(x, timesteps=t, context=context, y=y)
        return unet(x, t, context=context)  # ldm DiffusionWrapper.forward

    def _joins_concat(self) -> bool:
        """Whether `c_concat` joins x on the channels. SD 1/2 follow ldm `DiffusionWrapper.forward` (only for
        conditioning_key 'concat' / 'hybrid' / 'hybrid-adm'; otherwise c_concat is ignored), SDXL follows
        `sd_models_xl.apply_model` of WebUI v1.10.1 (only when `is_sdxl_inpaint`, a 9-channel UNet)."""
        if self.is_sdxl:
            return self.is_sdxl_inpaint
        return self.model.conditioning_key in ("concat", "hybrid", "hybrid-adm")

    def encode_first_stage(self, image):
        """ldm: the posterior. SDXL: sgm `DiffusionEngine.encode_first_stage` (generative-models 45c443b), the
        scaled latent `scale_factor * first_stage_model.encode(x)`, where the WebUI's SDXL VAE
        (`AutoencoderKLInferenceWrapper`) returns a sample of the posterior."""
        out = self.first_stage_model.encode(image)
        if self.is_sdxl:
            return self.scale_factor * (out if torch.is_tensor(out) else out.sample())
        return out

    def get_first_stage_encoding(self, posterior):
        """ldm: a sample times the scale factor. SDXL: the identity (v1.10.1 `sd_models_xl.get_first_stage_encoding`:
        sgm's `encode_first_stage` has done everything)."""
        if self.is_sdxl:
            return posterior
        return posterior.sample() * self.scale_factor

    def decode_first_stage(self, z):
        return self.first_stage_model.decode(z / self.scale_factor)


_LDM_CACHE: dict = {}


def make_ldm(family: str = "sd15", seed: int = 0, in_channels: int = 4, **kwargs) -> TinyLDM:
    """A fresh TinyLDM of ``family``: SD 2.1 is v-prediction, SDXL carries the emulated vector embedding.
    Built once per (family, seed, in_channels, kwargs) and deep-copied after, so callers may mutate it."""
    key = (family, seed, in_channels, tuple(sorted(kwargs.items())))
    if key not in _LDM_CACHE:
        parameterization = "v" if family == "sd21" else "eps"
        unet = make_unet(family, seed, in_channels=in_channels, vector=family == "sdxl")
        _LDM_CACHE[key] = TinyLDM(unet, family, parameterization=parameterization, **kwargs).eval()
    return copy.deepcopy(_LDM_CACHE[key])


def make_denoiser(ldm: TinyLDM):
    """The k-diffusion wrapper the WebUI puts around the model: CompVisVDenoiser for v-prediction."""
    from .kdiffusion_import import import_k_diffusion
    external = import_k_diffusion().external
    cls = external.CompVisVDenoiser if ldm.parameterization == "v" else external.CompVisDenoiser
    return cls(ldm, quantize=False)
