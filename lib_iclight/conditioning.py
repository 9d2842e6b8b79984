"""Build IC-Light's concat conditioning the way the official demos do.

1. Foreground (:func:`prepare_foreground`): alpha from, in order, a given mask, the image's own alpha
   channel (when not fully opaque), or a background remover (rembg when installed, or any callable
   ``rgb -> alpha``); then composited over grey 127 (``images.fill_grey``).
2. Per generation size (:meth:`ConcatSpec.latent`): ``resize_and_center_crop`` to (W, H), ``x/127 - 1``,
   VAE-encode, take the posterior's *mode* and multiply by the model's scale factor.
3. Layout: fc -> [B, 4, H/8, W/8] foreground latent; fbc -> [B, 8, H/8, W/8] = cat(fg, bg) on channels
   (the demo's ``torch.cat([c[None] for c in vae([fg, bg])], dim=1)``).

``vae_encode(x)`` takes float [B, 3, H, W] in the demo's range and returns the posterior (anything with
``.mode()``, or a diffusers output with ``.latent_dist``) or an unscaled latent tensor; in the WebUI pass
``sd_model.encode_first_stage`` and ``sd_model.scale_factor``.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ._concat import concat_module
from .errors import ICLightError
from .images import fill_grey, images_to_tensor, resize_and_center_crop, to_uint8_rgb
from .lighting import FBC_SOURCES, fbc_background, fc_light_image, parse_fbc_source

_batch = concat_module("batch")
Remover = Union[str, None, Callable[[np.ndarray], np.ndarray]]
REMBG_HINT = ("Give the foreground as a PNG with a transparent background, or give a mask, or install a "
              "background remover into the WebUI's Python (pip install rembg), or turn off background removal "
              "to use the whole image as the foreground.")
_REMBG_SESSIONS = {}


def remover_available() -> bool:
    """True when rembg can be imported."""
    try:
        import rembg  # noqa: F401
    except Exception:
        return False
    return True


def rembg_alpha(rgb: np.ndarray, model: str = "u2net") -> np.ndarray:
    """Foreground alpha (float32 [H, W] in [0, 1]) from rembg; raises ICLightError when rembg is missing."""
    try:
        import rembg
    except Exception as exc:
        raise ICLightError(f"No background remover is available (rembg is not installed: {exc}). {REMBG_HINT}") from None
    from PIL import Image
    session = _REMBG_SESSIONS.get(model)
    if session is None:
        session = _REMBG_SESSIONS[model] = rembg.new_session(model)
    mask = rembg.remove(Image.fromarray(rgb), session=session, only_mask=True, post_process_mask=True)
    mask = np.asarray(mask.convert("L") if hasattr(mask, "convert") else mask, dtype=np.float32)
    return (mask / 255.0).clip(0, 1)


def _mask_alpha(mask, height: int, width: int) -> np.ndarray:
    from PIL import Image
    array = np.asarray(mask)
    if array.ndim == 3:
        array = array[..., :3].astype(np.float32).mean(axis=-1) if array.shape[2] >= 3 else array[..., 0]
    array = array.astype(np.float32)  # bool / 0-1 masks stay, 0-255 masks are scaled
    if array.size and array.max() > 1.0:
        array = array / 255.0
    if array.shape != (height, width):
        array = np.asarray(Image.fromarray(array.astype(np.float32)).resize((width, height),
                                                                                      Image.BILINEAR))
    return array.clip(0, 1)


def prepare_foreground(image, mask=None, remover: Remover = "auto", sigma: float = 0.0) -> np.ndarray:
    """The demo's foreground: uint8 [H, W, 3] with the background replaced by grey 127.

    ``mask``: uint8 (255 = keep) or float [0, 1], any size (resized to the image). ``remover``:
    'auto' (rembg, or a clear error), None / 'none' (keep the whole image) or a callable
    ``uint8 rgb -> float alpha [H, W]``. An image's alpha channel wins over the remover."""
    if image is None:
        raise ICLightError("IC-Light needs a foreground image: add one in the IC-Light section "
                           "(or 'foreground' in the API arguments).")
    array = to_uint8_rgb(image)
    rgb = array[..., :3]
    h, w = rgb.shape[:2]
    if mask is not None:
        alpha = _mask_alpha(mask, h, w)
    elif array.shape[2] == 4 and (array[..., 3] < 255).any():
        alpha = array[..., 3].astype(np.float32) / 255.0
    elif remover is None or remover == "none":
        return rgb.copy()
    elif remover == "auto":
        alpha = rembg_alpha(rgb)
    elif callable(remover):
        alpha = np.asarray(remover(rgb), dtype=np.float32)
        alpha = alpha[..., 0] if alpha.ndim == 3 else alpha
    else:
        raise ICLightError(f"Unknown background remover {remover!r}; use 'auto', 'none' or a function.")
    return fill_grey(rgb, alpha, sigma)


def encode_images(images: Sequence[np.ndarray], vae_encode: Callable, scale_factor: float,
                  device=None, dtype=None) -> torch.Tensor:
    """``x/127 - 1`` -> ``vae_encode`` -> mode -> ``* scale_factor``. Returns [B, C, H/8, W/8]."""
    x = images_to_tensor(images)
    if device is not None or dtype is not None:
        x = x.to(device=device, dtype=dtype)
    out = vae_encode(x)
    out = getattr(out, "latent_dist", out)
    if not torch.is_tensor(out) and callable(getattr(out, "mode", None)):
        out = out.mode()
    if not torch.is_tensor(out):
        raise TypeError(f"vae_encode returned {type(out).__name__}; expected a posterior with .mode() or a tensor")
    return out * scale_factor


@dataclasses.dataclass(frozen=True)
class ConcatSpec:
    """Everything needed to (re-)build the concat latent at any size: prepared foregrounds (uint8 RGB,
    one per image or one for all) and, for fbc, the matching background images."""
    kind: str
    foregrounds: Tuple[np.ndarray, ...]
    backgrounds: Optional[Tuple[np.ndarray, ...]] = None

    @property
    def channels(self) -> int:
        return 4 if self.kind == "fc" else 8

    def images(self, width: int, height: int) -> List[List[np.ndarray]]:
        """Per image: [fg] (fc) or [fg, bg] (fbc), resized and centre-cropped to (width, height)."""
        out = []
        for i, fg in enumerate(self.foregrounds):
            row = [resize_and_center_crop(fg, width, height)]
            if self.kind == "fbc":
                bg = self.backgrounds[i if len(self.backgrounds) > 1 else 0]
                row.append(resize_and_center_crop(bg, width, height))
            out.append(row)
        return out

    def latent(self, width: int, height: int, vae_encode: Callable, scale_factor: float,
               device=None, dtype=None) -> torch.Tensor:
        """[N, 4 | 8, height/8, width/8]; N = number of foregrounds. Identical inputs are encoded once."""
        rows = self.images(width, height)
        flat, index = [], []
        for row in rows:
            ids = []
            for image in row:
                for j, seen in enumerate(flat):
                    if seen.shape == image.shape and np.array_equal(seen, image):
                        ids.append(j)
                        break
                else:
                    flat.append(image)
                    ids.append(len(flat) - 1)
            index.append(ids)
        latents = encode_images(flat, vae_encode, scale_factor, device=device, dtype=dtype)
        return torch.stack([torch.cat([latents[j] for j in ids], dim=0) for ids in index])


def make_concat_spec(kind: str, foregrounds: Sequence[np.ndarray], width: int, height: int,
                     background_source: Optional[str] = None, background=None) -> ConcatSpec:
    """Spec for ``kind`` ('fc' / 'fbc') from prepared foregrounds. For fbc the background comes from
    ``background_source`` (see :mod:`.lighting`); generated ramps are drawn at (width, height), the
    first-pass size, and resized with the foreground for later passes, as the demo does for hires."""
    if kind not in ("fc", "fbc"):
        raise ICLightError(f"Unknown IC-Light mode {kind!r}; use 'fc' or 'fbc'.")
    fgs = tuple(to_uint8_rgb(f)[..., :3] for f in foregrounds)
    if not fgs:
        raise ICLightError("IC-Light needs a foreground image.")
    if kind == "fc":
        return ConcatSpec("fc", fgs)
    source = parse_fbc_source(background_source)
    if source == "flip_foreground":
        bgs = tuple(fbc_background(source, width, height, foreground=f) for f in fgs)
    else:
        bgs = (fbc_background(source, width, height, uploaded=background),)
    return ConcatSpec("fbc", fgs, bgs)


def fc_initial_latent(direction: Optional[str], width: int, height: int, vae_encode: Callable,
                      scale_factor: float, device=None, dtype=None) -> Optional[torch.Tensor]:
    """The demo's fc lighting preference as an img2img start latent [1, 4, h, w] (None for 'none'):
    the ramp of :func:`.lighting.fc_light_image`, encoded like the foreground (``x/127 - 1``, mode, scale).
    The demo then denoises from it with strength ~0.9."""
    image = fc_light_image(direction, width, height)
    if image is None:
        return None
    return encode_images([image], vae_encode, scale_factor, device=device, dtype=dtype)


def match_batch(concat: torch.Tensor, batch: int) -> torch.Tensor:
    """Rows per image for a batch of ``batch`` images: one row is repeated, N rows must equal ``batch``
    (``lib_concat.match_batch`` with IC-Light's wording)."""
    return _batch.match_batch(concat, batch, owner="IC-Light", what="foregrounds", one="foreground",
                              error=ICLightError)


class ConcatProvider(_batch.ConcatProvider):
    """IC-Light's concat latent for whatever latent ``x`` the sampler is about to denoise (``lib_concat``'s
    provider over :meth:`ConcatSpec.latent`): size from ``x`` (H = 8 h, W = 8 w), rows matched to ``x.shape[0]``
    (:func:`match_batch`), device and dtype of ``x``. Encodes once per size (first pass and hires pass each
    encode once); ``encodes`` counts VAE calls.

    In the WebUI, ``provider.for_latent`` is what ``p.txt2img_image_conditioning(x)`` /
    ``p.img2img_image_conditioning(image, x)`` should return while IC-Light is armed."""

    def __init__(self, spec: ConcatSpec, vae_encode: Callable, scale_factor: float, device=None, dtype=None):
        self.spec, self.vae_encode, self.scale_factor = spec, vae_encode, scale_factor
        self.device, self.dtype = device, dtype
        super().__init__(lambda width, height: spec.latent(width, height, vae_encode, scale_factor,
                                                           device=device, dtype=dtype), matcher=match_batch)

    @property
    def encodes(self) -> int:
        return self.builds


__all__ = ["ConcatProvider", "ConcatSpec", "FBC_SOURCES", "encode_images", "fc_initial_latent", "make_concat_spec",
           "match_batch", "prepare_foreground", "rembg_alpha", "remover_available"]
