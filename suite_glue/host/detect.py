"""Which WebUI runs us, read once from the packages it has loaded (no model needed, so it works while scripts load).

- Forge family: every fork built on lllyasviel's Forge ships the package `modules_forge` beside `modules`.
  - `ldm_patched` beside it (the Forge of early 2024 and its forks: reForge, Forge Classic): the UNet, CFG and
    patches run through `ldm_patched` (model_patcher.ModelPatcher, samplers.sampling_function). Told apart by
    `modules_forge.forge_version.version` ("classic" in Forge Classic, "f0..." in Forge 1.x, "1.0.0v2-..." in
    reForge) for messages only.
  - `backend` beside it (Forge 2.x and Forge Neo): another model code (`backend.nn.unet`), other sd_model object.
- Otherwise AUTOMATIC1111 (what the suite is built for). SD.Next is not told apart (not supported).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import NamedTuple

A1111 = "a1111"
FORGE_LDM_PATCHED = "forge-ldm_patched"  # reForge, Forge Classic
FORGE_BACKEND = "forge-backend"  # Forge 2.x, Forge Neo


class HostFamily(NamedTuple):
    kind: str
    name: str  # for messages, e.g. "reForge"


def _present(name: str) -> bool:
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _forge_version() -> str:
    try:
        return str(getattr(importlib.import_module("modules_forge.forge_version"), "version", ""))
    except Exception:  # an old or trimmed fork without the file
        return ""


def detect() -> HostFamily:
    if not _present("modules_forge"):
        return HostFamily(A1111, "AUTOMATIC1111 WebUI")
    version = _forge_version()
    if _present("ldm_patched"):
        version = version.strip().lower()
        name = "Forge Classic" if version == "classic" else "Forge 1.x" if version.startswith("f") else "reForge"
        return HostFamily(FORGE_LDM_PATCHED, name)
    return HostFamily(FORGE_BACKEND, "Forge / Forge Neo")
