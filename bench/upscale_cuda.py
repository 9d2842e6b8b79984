"""SD x4 upscaler at its real size on a CUDA GPU (random weights, no download): peak memory and time of tiled vs
untiled upscales, and the peak-memory formula of lib_concat.upscale_x4 fitted to them.

`python -m bench.upscale_cuda [--side 512] [--steps 4]` prints JSON. Models: the official x4-upscaling.yaml sizes
(UNet 256 base channels, [1, 2, 2, 4], context 1024; VAE decoder ch 128, [1, 2, 4]; OpenCLIP ViT-H text tower,
24 blocks of width 1024), the UNet and text tower in float16 under autocast and the VAE in float32 without it,
attention through scaled_dot_product_attention (the WebUI's default), as the WebUI runs them. For tiles
T = side/8, side/4, side/2 (overlap T/4) and untiled: peak extra memory (torch.cuda.max_memory_allocated minus
the weights) and seconds. ``fit``: peak = a + b * T^2 by least squares over the tiled runs, and that fit's
prediction for the untiled run (T = side) next to the measurement.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

UNET = dict(image_size=128, in_channels=7, out_channels=4, model_channels=256, attention_resolutions=[2, 4, 8],
            num_res_blocks=2, channel_mult=[1, 2, 2, 4], disable_self_attentions=[True, True, True, False],
            disable_middle_self_attn=False, num_heads=8, use_spatial_transformer=True, transformer_depth=1,
            context_dim=1024, legacy=False, use_linear_in_transformer=True, num_classes=1000, use_checkpoint=False)
DECODER = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=128, ch_mult=[1, 2, 4],
               num_res_blocks=2, attn_resolutions=[], dropout=0.0)


def real_models(device):
    from ldm.modules.diffusionmodules.model import Decoder
    from ldm.modules.diffusionmodules.openaimodel import UNetModel
    from lib_concat.x4_models import X4Decoder, X4Models
    from lib_concat.x4_text import OpenCLIPText, TextConfig
    with torch.device(device):
        unet = UNetModel(**UNET)
        decoder = X4Decoder(Decoder(**DECODER), 4, 4)
        text = OpenCLIPText(TextConfig(vocab=49408, width=1024, context_length=77, layers=24, mlp_width=4096))
        for module in (unet, decoder, text):
            for p in module.parameters():
                torch.nn.init.normal_(p, 0, 0.02)
    return X4Models(unet=unet.eval(), decoder=decoder.eval(), text=text.eval())


def run(side: int = 512, steps: int = 4) -> dict:
    from bench.upscale import sdp_attention
    from lib_concat.upscale_x4 import Runtime, X4Settings, X4Upscaler
    from support.x4_fixtures import tokenize

    device = torch.device("cuda")
    runtime = Runtime(device=device, unet_dtype=torch.float16, vae_dtype=torch.float32,
                      unet_context=lambda: torch.autocast("cuda", dtype=torch.float16),
                      vae_context=lambda: torch.autocast("cuda", enabled=False))
    upscaler = X4Upscaler(real_models(device), tokenize, runtime)
    upscaler.to_runtime()
    image = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1
    weights = torch.cuda.memory_allocated()
    results = {"side": side, "steps": steps, "weights_mb": weights / 2 ** 20, "runs": []}

    def measure(tile, overlap):
        settings = X4Settings(steps=steps, cfg_scale=7.0, tile=tile, overlap=overlap, seed=0)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        latent, out = upscaler.upscale_tensor(image, "a photo", "blurry", settings)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() - base
        del latent, out
        return {"tile": tile, "overlap": overlap, "peak_extra_mb": peak / 2 ** 20, "seconds": seconds,
                "tiles_per_call": upscaler.tiles_run // max(1, steps)}

    with sdp_attention(), torch.no_grad():
        upscaler.upscale_tensor(image[..., :64, :64], "a photo", "blurry", X4Settings(steps=1, tile=64, overlap=0))
        tiles = [side // 8, side // 4, side // 2]
        for tile in tiles:
            results["runs"].append(measure(tile, tile // 4))
        results["runs"].append(measure(side, 0))
    tiled, untiled = results["runs"][:-1], results["runs"][-1]
    xs = torch.tensor([float(r["tile"]) ** 2 for r in tiled], dtype=torch.float64)
    ys = torch.tensor([r["peak_extra_mb"] for r in tiled], dtype=torch.float64)
    design = torch.stack([torch.ones_like(xs), xs], dim=1)
    a, b = torch.linalg.lstsq(design, ys[:, None]).solution[:, 0].tolist()
    default = next(r for r in tiled if r["tile"] == side // 4)
    results.update({
        "fit": {"a_mb": a, "b_mb_per_tile_pixel": b, "predicted_untiled_mb": a + b * side ** 2,
                "measured_untiled_mb": untiled["peak_extra_mb"]},
        "peak_memory_ratio": default["peak_extra_mb"] / untiled["peak_extra_mb"],
        "tile_overhead_ratio": default["seconds"] / untiled["seconds"],
        "gpu": torch.cuda.get_device_name(0),
    })
    return results


if __name__ == "__main__":
    import bench  # noqa: F401  (paths: tests/ for the tokenizer stand-in)
    parser = argparse.ArgumentParser(prog="python -m bench.upscale_cuda", description=__doc__)
    parser.add_argument("--side", type=int, default=512, help="input side in pixels (multiple of 64)")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    from support.kdiffusion_import import import_k_diffusion
    import_k_diffusion()
    print(json.dumps(run(args.side, args.steps), indent=2))
