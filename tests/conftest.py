"""Test session setup: the repo root (our packages), tests/ (support helpers) and tests/host (the WebUI
host double's `modules` package) on sys.path; k-diffusion imported without torchvision; one CPU thread."""
import os
import sys

import torch

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
for path in (os.path.join(TESTS, "host"), TESTS, ROOT):
    if path not in sys.path:
        sys.path.insert(0, path)

from support.kdiffusion_import import import_k_diffusion  # noqa: E402

import_k_diffusion()

from modules import sd_hijack_unet  # noqa: E402  (the host double; as the WebUI does at start-up)

sd_hijack_unet.install()
# One intra-op thread: the tiny models gain nothing from more, and with two cores shared by other processes
# OpenMP spin-waiting made a forward ~100x slower.
torch.set_num_threads(1)
