"""Test session setup: the repo root (our packages), tests/ (support helpers) and tests/host (the WebUI
host double's `modules` package) on sys.path; k-diffusion imported without torchvision; 2 CPU threads."""
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
torch.set_num_threads(min(2, os.cpu_count() or 1))
