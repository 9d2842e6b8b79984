"""Edit-model step cost: one sampler step (one CFG-denoiser call: model wrapper + UNet + guidance) of the suite's
SDXL edit path against a plain SDXL step of the same tiny UNet layout, measured side by side.

Both run the same batch rows through the same k-diffusion wrapping and the same tiny SDXL-layout UNet (3 levels,
attention at levels 1-2, depth 2, seeded weights; the edit one only has a wider conv_in):
- ``plain``: a plain SDXL model (4-channel conv_in), k-diffusion's CompVisDenoiser, the 3 rows of the edit batch
  guided as the WebUI guides 3 rows of a plain model would cost (the UNet work is what a step costs);
- ``edit``: the 8-channel model set up as suite_glue.edit_checkpoints sets up an SDXL InstructPix2Pix checkpoint
  (apply_model joins c_concat, fitted to x's rows and size), CompVisDenoiser, the WebUI's edit guidance;
- ``cosxl``: the same with CosXL Edit's EDM v-prediction denoiser (lib_concat.EDMVDenoiser).
Numbers: ``edit_overhead_ratio`` / ``cosxl_overhead_ratio`` = median over interleaved repetitions of (edit step time
/ plain step time), target <= 1.05; ``*_step_ms`` medians; ``image_guidance_rows_ratio`` = a plain step on 3 rows
over one on 2 rows (the cost of image guidance itself: the WebUI's 3-way batch, not overhead of the suite);
``latent_side``, ``repeats``, ``cuda``. On CPU, process CPU time with one thread (see bench.cfgpp._clock).
"""
from __future__ import annotations

import statistics

import torch

from bench.cfgpp import _clock, _sync
from support.kdiffusion_import import import_k_diffusion
from support.tiny_models import make_context, make_ldm

import lib_concat
from suite_glue import edit_checkpoints


def _setup_edit(model, cosxl: bool):
    """What suite_glue.edit_checkpoints.setup does for a loaded SDXL edit checkpoint."""
    found = lib_concat.EditCheckpoint(lib_concat.COSXL_EDIT if cosxl else lib_concat.SDXL_IP2P, "bench",
                                      *((0.002, 120.0, 1.0) if cosxl else (None, None, None)))
    edit_checkpoints._found["bench.safetensors"] = found
    model.sd_checkpoint_info = type("Info", (), {"filename": "bench.safetensors"})()
    assert edit_checkpoints.setup(model) is not None
    return model


def _step(denoiser, x, sigma, cond, image, rows, edit: bool, text_scale=7.0, image_scale=1.5):
    """One CFG-denoiser call on `rows` (2: cond, uncond; 3: the edit batch) and the guidance combine."""
    x_in, sigma_in = x.repeat(rows, 1, 1, 1), sigma.repeat(rows)
    c = {"crossattn": cond["crossattn"].repeat(rows, 1, 1), "vector": cond["vector"].repeat(rows, 1)}
    if edit:
        c["c_concat"] = [torch.cat([image, image, torch.zeros_like(image)])]
    out = denoiser(x_in, sigma_in, cond=c).chunk(rows)
    if rows == 3:
        return lib_concat.combine_edit(*out, text_scale, image_scale)
    return out[1] + text_scale * (out[0] - out[1])


def run(quick: bool = False) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)  # a tiny model gains nothing from more; shared cores make 2+ erratic
    try:
        return _run(device, quick)
    finally:
        torch.set_num_threads(threads)


def _run(device, quick: bool) -> dict:
    k_diffusion = import_k_diffusion()
    side, repeats = (16, 5) if quick else (32, 21)
    plain_model = make_ldm("sdxl", 0).to(device)
    ip2p_model = _setup_edit(make_ldm("sdxl", 0, in_channels=8).to(device), cosxl=False)
    cosxl_model = _setup_edit(make_ldm("sdxl", 0, in_channels=8).to(device), cosxl=True)
    denoisers = {"plain": k_diffusion.external.CompVisDenoiser(plain_model),
                 "edit": k_diffusion.external.CompVisDenoiser(ip2p_model),
                 "cosxl": cosxl_model.create_denoiser()}
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, side, side, generator=gen).to(device)
    image = torch.randn(1, 4, side, side, generator=gen).to(device)
    cond = {"crossattn": make_context("sdxl", 1).to(device), "vector": torch.randn(1, 64, generator=gen).to(device)}
    sigma = torch.tensor([2.0], device=device)
    runs = {"plain": lambda: _step(denoisers["plain"], x, sigma, cond, image, 3, False),
            "plain_2": lambda: _step(denoisers["plain"], x, sigma, cond, image, 2, False),
            "edit": lambda: _step(denoisers["edit"], x, sigma, cond, image, 3, True),
            "cosxl": lambda: _step(denoisers["cosxl"], x, sigma, cond, image, 3, True)}
    clock = _clock(device)
    times = {name: [] for name in runs}
    with torch.no_grad():
        for fn in runs.values():
            fn()  # warm-up
        for r in range(repeats):
            order = list(runs) if r % 2 == 0 else list(reversed(runs))
            for name in order:
                _sync(device)
                start = clock()
                runs[name]()
                _sync(device)
                times[name].append(clock() - start)
    for model in (ip2p_model, cosxl_model):
        edit_checkpoints.teardown(model)
    edit_checkpoints._found.pop("bench.safetensors", None)

    def ratio(a, b):
        return statistics.median(x / y for x, y in zip(times[a], times[b]))

    return {"edit_overhead_ratio": ratio("edit", "plain"), "cosxl_overhead_ratio": ratio("cosxl", "plain"),
            "plain_step_ms": 1000 * statistics.median(times["plain"]),
            "edit_step_ms": 1000 * statistics.median(times["edit"]),
            "cosxl_step_ms": 1000 * statistics.median(times["cosxl"]),
            "image_guidance_rows_ratio": ratio("plain", "plain_2"),
            "latent_side": side, "repeats": repeats, "cuda": device.type == "cuda"}
