"""The WebUI's Tiling option on a (tiny) model, as v1.10.1 applies it.

``process_images_inner`` (modules/processing.py) calls ``model_hijack.apply_circular(p.tiling)`` (``p.tiling``
defaults to the "Tiling" setting); ``StableDiffusionModelHijack.apply_circular`` (modules/sd_hijack.py) sets
``padding_mode = 'circular'`` (or back to 'zeros') on every module of the model whose type is exactly
``torch.nn.Conv2d``. A conv's padding amounts were fixed at construction (``_reversed_padding_repeated_twice``):
with a non-'zeros' mode, torch pads by those and ignores a later change of ``padding``.
"""
from __future__ import annotations

import torch


def apply_circular(model: torch.nn.Module, enable: bool = True) -> int:
    """Returns how many convs were switched."""
    convs = [m for m in model.modules() if type(m) == torch.nn.Conv2d]  # noqa: E721 (exact type, as the WebUI)
    for conv in convs:
        conv.padding_mode = "circular" if enable else "zeros"
    return len(convs)
