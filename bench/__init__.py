"""Benchmarks on tiny or random-weight models, run by hand: `python -m bench [hidiffusion|cfgpp|iclight] [--json]`.

Each feature module exposes `run(quick=False) -> dict` of numbers measured side by side in one run.
The test helpers (tiny real-class models, k-diffusion import without torchvision) live under tests/."""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (os.path.join(_ROOT, "tests", "host"), os.path.join(_ROOT, "tests"), _ROOT):
    if _path not in sys.path:
        sys.path.insert(0, _path)
