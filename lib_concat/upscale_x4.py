"""The SD x4 upscaler as one function of an image: low-res RGB in, 4x RGB out, with its own models.

Per image (``X4Upscaler.upscale``):
1. the image in [-1, 1] (x / 127.5 - 1), padded at the bottom/right (edge pixels repeated) to a multiple of 8
   (the UNet halves the size three times);
2. seeded noise drawn on the CPU, first for the image [1, 3, H, W], then for the latent [1, 4, H, W] (the order
   of diffusers' ``StableDiffusionUpscalePipeline``), so a seed gives the same result anywhere;
3. the image noised to ``noise_level`` by the low-scale schedule: sqrt(a) x + sqrt(1 - a) n, a = alphas_cumprod
   [noise_level]; it is concatenated to every (scaled) latent the UNet sees, with ``noise_level`` as class label;
4. k-diffusion sampling (Karras sigmas of the model's schedule, v-prediction as k-diffusion's
   ``CompVisVDenoiser``), classifier-free guidance on [cond, uncond] rows; in tiles (below) when the latent is
   larger than a tile;
5. the latent / 0.08333 decoded by the VAE (f = 4), in the same tiles at 4x, cropped back to 4x the input.

Tiling (``lib_concat.tiling``): every denoiser call runs the UNet tile by tile and blends the tiles' denoised
outputs (linear ramps over the overlaps); the sampler sees one whole latent, so tiles stay consistent step by
step. Where tiles do not overlap, a tile's pixels are exactly what the single-tile run of that crop (with the same
noise) gives. Peak memory (bytes; latent H x W = input size, tile T, c = CFG rows: 2, or 1 at CFG scale 1):

    peak ~= weights + S * H * W + max(U * c * Th * Tw, D * Th * Tw)          Th = min(T, H), Tw = min(T, W)

with S the per-pixel state that always spans the whole image (latent, noised image, noise, sampler history,
blend accumulators, the 4x output: ~ (4 * k + 3 + 3 + 4 + 1 + 48) floats; k latent copies the sampler keeps,
2-4), U the UNet's activation bytes per latent pixel and row, D the decoder's per latent pixel (its activations
are 16x as many pixels). Untiled, Th x Tw = H x W; tiled, the second term stops growing with the image, so the
ratio tiled / untiled tends to (S + (U c + D) / n) / (S + U c + D) for n tiles' worth of image
(`python -m bench upscale` measures it). Time grows with the tiles' total area (overlaps are computed twice).
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from . import tiling
from .errors import ConcatError
from .x4_models import LATENT_CHANNELS, TITLE, X4Models

SAMPLERS = {"DPM++ 2M": "sample_dpmpp_2m", "Euler": "sample_euler", "Heun": "sample_heun", "LMS": "sample_lms"}
MIN_SIDE = 16
MULTIPLE = 8
SCALE = 4


@dataclasses.dataclass(frozen=True)
class X4Settings:
    """What a user sets (WebUI settings, or the hires pass); checked by :meth:`check`."""
    noise_level: int = 20
    steps: int = 20
    cfg_scale: float = 9.0
    sampler: str = "DPM++ 2M"
    tile: int = 128
    overlap: int = 32
    seed: int = 0

    def check(self, max_noise_level: int) -> None:
        def bad(name, text):
            raise ConcatError(f"{TITLE}: setting '{name}' {text}")
        if not 0 <= self.noise_level <= max_noise_level:
            bad("noise level", f"must be between 0 and {max_noise_level}, got {self.noise_level}")
        if self.steps < 1:
            bad("steps", f"must be at least 1, got {self.steps}")
        if self.sampler not in SAMPLERS:
            bad("sampler", f"must be one of {list(SAMPLERS)}, got {self.sampler!r}")
        if self.tile < 32 or self.tile % MULTIPLE:
            bad("tile size", f"must be a multiple of {MULTIPLE} of at least 32 (input pixels), got {self.tile}")
        if not 0 <= self.overlap <= self.tile // 2 or self.overlap % MULTIPLE:
            bad("tile overlap", f"must be a multiple of {MULTIPLE} from 0 to half the tile size "
                                f"({self.tile // 2}), got {self.overlap}")


@dataclasses.dataclass
class Runtime:
    """Where and how to run: device and dtypes (the host's), contexts for the UNet and the VAE passes (e.g. the
    host's autocast on and off: the official config warns that this VAE breaks in half precision, so it runs in
    ``vae_dtype``, float32 by default), an interrupt check and a per-step callback."""
    device: torch.device = torch.device("cpu")
    unet_dtype: torch.dtype = torch.float32
    vae_dtype: torch.dtype = torch.float32
    unet_context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    vae_context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    interrupted: Callable[[], bool] = lambda: False
    on_step: Optional[Callable[[int, int], None]] = None


class _Stop(Exception):
    pass


class _KDiffusionModel(nn.Module):
    """What k-diffusion's ``CompVisVDenoiser`` reads of a model: ``alphas_cumprod`` and ``apply_model``."""

    def __init__(self, unet: nn.Module, alphas_cumprod: torch.Tensor):
        super().__init__()
        self.unet = unet
        self.register_buffer("alphas_cumprod", alphas_cumprod.to(torch.float32), persistent=False)

    def apply_model(self, x, t, cond):
        dtype = next(self.unet.parameters()).dtype
        x = torch.cat([x, cond["c_concat"]], dim=1).to(dtype)
        return self.unet(x, t, context=cond["c_crossattn"].to(dtype), y=cond["y"]).float()


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image -> [1, 3, H, W] float32 in [-1, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1)[None].contiguous()


def tensor_to_image(x: torch.Tensor) -> Image.Image:
    """[1, 3, H, W] in [-1, 1] -> PIL RGB (rounded)."""
    array = ((x[0].float().clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).to(torch.uint8).cpu().numpy()
    return Image.fromarray(array)


def draw_noise(height: int, width: int, seed: int):
    """(image noise [1, 3, H, W], latent noise [1, 4, H, W]) from one CPU generator, in diffusers' order."""
    generator = torch.Generator("cpu").manual_seed(int(seed))
    image_noise = torch.randn((1, 3, height, width), generator=generator)
    return image_noise, torch.randn((1, LATENT_CHANNELS, height, width), generator=generator)


class X4Upscaler:
    """Upscale with loaded :class:`X4Models`. ``tokenize(texts) -> LongTensor [N, context_length]`` is the
    OpenCLIP tokenizer (``open_clip.tokenize`` in the WebUI)."""

    def __init__(self, models: X4Models, tokenize: Callable[[List[str]], torch.Tensor], runtime: Runtime = None):
        self.models, self.tokenize, self.runtime = models, tokenize, runtime or Runtime()
        self.model = _KDiffusionModel(models.unet, models.alphas_cumprod)
        from k_diffusion.external import CompVisVDenoiser
        self.denoiser = CompVisVDenoiser(self.model, quantize=False)
        self.tiles_run = 0  # UNet tile evaluations of the last upscale (one per tile per denoiser call)

    # --- placement -----------------------------------------------------------------------------------------
    def to_runtime(self) -> None:
        rt, m = self.runtime, self.models
        m.unet.to(rt.device, rt.unet_dtype)
        m.text.to(rt.device, rt.unet_dtype)
        m.decoder.to(rt.device, rt.vae_dtype)
        self.denoiser.to(rt.device)

    def offload(self, device="cpu") -> None:
        for module in self.models.modules():
            module.to(device)
        self.denoiser.to(device)

    # --- pieces ----------------------------------------------------------------------------------------------
    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenize(list(prompts)).to(self.runtime.device)
        with self.runtime.unet_context():
            return self.models.text(tokens).float()

    def noised_image(self, image: torch.Tensor, noise: torch.Tensor, noise_level: int) -> torch.Tensor:
        alpha = self.models.low_res_alphas_cumprod[noise_level].item()
        return alpha ** 0.5 * image + (1 - alpha) ** 0.5 * noise

    def sigmas(self, steps: int) -> torch.Tensor:
        from k_diffusion.sampling import get_sigmas_karras
        return get_sigmas_karras(steps, self.denoiser.sigma_min.item(), self.denoiser.sigma_max.item(),
                                 device=self.runtime.device)

    def _guided(self, x, sigma, lowres, cond, uncond, level, cfg_scale):
        """CFG-combined denoised x0 for one tile: rows [cond, uncond] (cond only at CFG scale 1)."""
        rows = 1 if cfg_scale == 1 else 2
        context = cond if rows == 1 else torch.cat([cond, uncond])
        out = self.denoiser(x.repeat(rows, 1, 1, 1), sigma.repeat(rows),
                            cond={"c_concat": lowres.repeat(rows, 1, 1, 1), "c_crossattn": context,
                                  "y": torch.full((rows,), level, dtype=torch.long, device=x.device)})
        self.tiles_run += 1
        if rows == 1:
            return out
        return out[1:] + cfg_scale * (out[:1] - out[1:])

    def sample(self, lowres: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor, settings: X4Settings,
               latent_noise: torch.Tensor) -> torch.Tensor:
        """Latent [1, 4, H, W] for the noised image ``lowres`` [1, 3, H, W] (H, W multiples of 8)."""
        import k_diffusion.sampling
        rt = self.runtime
        height, width = lowres.shape[-2:]
        tiles = tiling.plan(height, width, settings.tile, settings.overlap, MULTIPLE)
        lowres, cond, uncond = (t.to(rt.device, torch.float32) for t in (lowres, cond, uncond))
        self.tiles_run = 0

        def model(x, sigma, **_):
            def run(t):
                ys, xs = t.box()
                return self._guided(x[..., ys, xs], sigma, lowres[..., ys, xs], cond, uncond, settings.noise_level,
                                    settings.cfg_scale)
            return tiling.blend(tiles, run, x.shape, device=x.device)

        sigmas = self.sigmas(settings.steps)
        last = {}

        def callback(info):
            last["denoised"] = info["denoised"]
            if rt.on_step is not None:
                rt.on_step(info["i"] + 1, settings.steps)
            if rt.interrupted():
                raise _Stop

        sampler = getattr(k_diffusion.sampling, SAMPLERS[settings.sampler])
        x = latent_noise.to(rt.device, torch.float32) * sigmas[0]
        with rt.unet_context():
            try:
                return sampler(model, x, sigmas, callback=callback, disable=True)
            except _Stop:  # interrupted: the current estimate, as the WebUI's samplers return their last latent
                return last["denoised"]

    def decode(self, latent: torch.Tensor, settings: X4Settings) -> torch.Tensor:
        """[1, 3, 4H, 4W] in [-1, 1] (float32), decoded tile by tile (same tiles as sampling, at 4x)."""
        rt, decoder = self.runtime, self.models.decoder
        height, width = latent.shape[-2:]
        tiles = tiling.plan(height, width, settings.tile, settings.overlap, MULTIPLE)
        z = latent.to(rt.device, torch.float32) / self.models.scale_factor

        def run(t):
            ys, xs = t.box()
            return decoder(z[..., ys, xs].to(rt.vae_dtype)).float()

        with rt.vae_context():
            return tiling.blend(tiles, run, (1, 3, height * SCALE, width * SCALE), scale=SCALE, device=rt.device)

    # --- whole -----------------------------------------------------------------------------------------------
    def upscale_tensor(self, image: torch.Tensor, prompt: str, negative_prompt: str, settings: X4Settings):
        """(latent [1, 4, H', W'], image [1, 3, 4H, 4W] in [-1, 1]) for ``image`` [1, 3, H, W] in [-1, 1];
        H', W' = H, W padded to multiples of 8."""
        settings.check(self.models.max_noise_level)
        height, width = image.shape[-2:]
        if min(height, width) < MIN_SIDE:
            raise ConcatError(f"{TITLE}: the input is {width}x{height} pixels; it needs at least {MIN_SIDE}x{MIN_SIDE} "
                              "(use another upscaler for smaller images)")
        pad_h, pad_w = -height % MULTIPLE, -width % MULTIPLE
        padded = nn.functional.pad(image, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else image
        image_noise, latent_noise = draw_noise(padded.shape[-2], padded.shape[-1], settings.seed)
        with torch.no_grad():
            cond, uncond = self.encode_text([prompt, negative_prompt]).chunk(2)
            lowres = self.noised_image(padded.float(), image_noise, settings.noise_level)
            latent = self.sample(lowres, cond, uncond, settings, latent_noise)
            out = self.decode(latent, settings)[..., :height * SCALE, :width * SCALE]
        return latent, out

    def upscale(self, image: Image.Image, prompt: str = "", negative_prompt: str = "",
                settings: X4Settings = X4Settings()) -> Image.Image:
        """4x ``image`` (PIL, any mode; RGB used)."""
        return tensor_to_image(self.upscale_tensor(image_to_tensor(image), prompt, negative_prompt, settings)[1])
