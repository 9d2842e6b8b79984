"""Host double of modules.devices: CPU only; autocast only with FP8 weight storage (`fp8`, set by
sd_models.load_model_weights), which v1.10.1 runs on the CPU under bfloat16 autocast."""
import contextlib

import torch

cpu = torch.device("cpu")
device = cpu
dtype = torch.float32
dtype_vae = torch.float32
dtype_unet = torch.float32
unet_needs_upcast = False
fp8 = False


def autocast(disable=False):
    if disable:
        return contextlib.nullcontext()
    if fp8 and device == cpu:  # v1.10.1 devices.autocast
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=True)
    return contextlib.nullcontext()


def without_autocast(disable=False):
    return contextlib.nullcontext()


def torch_gc():
    pass


def test_for_nans(x, where):
    pass
