"""SD x4 upscaler: memory and time of tiled vs untiled upscaling, side by side, on the tiny x4 checkpoint
(tests/support/x4_fixtures: the official layout at 32 base channels) on the CPU.

Input: a square image 4x the tile size per side (tile 32 input pixels, overlap 8 -> 128x128 in, 512x512 out;
``--quick``: 2x). Both runs: same seed, 1 DPM++ 2M step, CFG 5 (two UNet rows per tile), each run twice, alternating.
Attention (UNet and VAE) runs through PyTorch's scaled-dot-product attention, as with the WebUI's default
optimisation (ldm's plain VAE AttnBlock would hold a (H*W)^2 matrix for the whole latent).
Real model sizes on a CUDA GPU: ``python -m bench.upscale_cuda`` (random weights).

Numbers:
- ``peak_memory_ratio``: peak extra RSS of the tiled upscale / that of the untiled one (VmHWM, see bench.iclight);
  the formula in lib_concat.upscale_x4 predicts (S + (U c + D) / n) / (S + U c + D) for n = 16 tiles' worth
- ``tile_overhead_ratio``: median seconds tiled / untiled. On these tiny models each tile's UNet call is mostly
  Python overhead, so this is an upper bound; with real model sizes it tends to ``tile_area_ratio``
- ``tile_area_ratio``: sum of tile areas / image area: the extra UNet and VAE work the overlaps cost
- ``peak_extra_mb_tiled`` / ``peak_extra_mb_untiled``, ``tiles``
"""
from __future__ import annotations

import contextlib
import statistics
import time

import torch

TILE, OVERLAP, STEPS, REPEATS = 32, 8, 1, 2


@contextlib.contextmanager
def sdp_attention():
    """ldm's UNet CrossAttention and VAE AttnBlock through torch's scaled_dot_product_attention for the duration
    (what the WebUI's default "sdp" optimisation does to them), restored afterwards."""
    from ldm.modules import attention
    from ldm.modules.diffusionmodules import model

    def cross_attention(self, x, context=None, mask=None):
        context = x if context is None else context
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        b, n, inner = q.shape
        q, k, v = (t.reshape(b, -1, self.heads, inner // self.heads).transpose(1, 2) for t in (q, k, v))
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, inner))

    def attn_block(self, x):
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        b, c, hh, ww = q.shape
        q, k, v = (t.reshape(b, 1, c, hh * ww).transpose(2, 3).contiguous() for t in (q, k, v))
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return x + self.proj_out(out.transpose(2, 3).reshape(b, c, hh, ww))

    originals = attention.CrossAttention.forward, model.AttnBlock.forward
    attention.CrossAttention.forward, model.AttnBlock.forward = cross_attention, attn_block
    try:
        yield
    finally:
        attention.CrossAttention.forward, model.AttnBlock.forward = originals


def run(quick: bool = False) -> dict:
    from bench.iclight import PeakRSS
    from lib_concat import tiling
    from lib_concat.upscale_x4 import X4Settings, X4Upscaler
    from lib_concat.x4_models import build_models
    from support.x4_fixtures import tiny_x4_state_dict, tokenize

    side = (2 if quick else 4) * TILE
    upscaler = X4Upscaler(build_models(tiny_x4_state_dict()), tokenize)
    image = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1
    tiled = X4Settings(steps=STEPS, cfg_scale=5.0, tile=TILE, overlap=OVERLAP, seed=0)
    untiled = X4Settings(steps=STEPS, cfg_scale=5.0, tile=side, overlap=0, seed=0)
    tiles = tiling.plan(side, side, TILE, OVERLAP, 8)

    def once(settings):
        return upscaler.upscale_tensor(image, "a photo", "blurry", settings)

    peaks, times = {"untiled": [], "tiled": []}, {"untiled": [], "tiled": []}
    with sdp_attention(), torch.no_grad():
        upscaler.upscale_tensor(image[..., :TILE, :TILE], "a photo", "blurry", tiled)  # warm-up
        for _ in range(1 if quick else REPEATS):
            for name, settings in (("untiled", untiled), ("tiled", tiled)):
                with PeakRSS() as mem:
                    t0 = time.perf_counter()
                    once(settings)
                    times[name].append(time.perf_counter() - t0)
                peaks[name].append(mem.extra)
    peaks = {name: min(values) for name, values in peaks.items()}
    return {
        "input_side": side,
        "tile": TILE,
        "overlap": OVERLAP,
        "tiles": len(tiles),
        "peak_memory_ratio": peaks["tiled"] / peaks["untiled"],
        "tile_overhead_ratio": statistics.median(times["tiled"]) / statistics.median(times["untiled"]),
        "tile_area_ratio": tiling.covered_area_ratio(tiles, side, side),
        "peak_extra_mb_tiled": peaks["tiled"] / 2 ** 20,
        "peak_extra_mb_untiled": peaks["untiled"] / 2 ** 20,
    }


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=2))
