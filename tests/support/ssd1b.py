"""SSD-1B as the WebUI makes it: an SDXL UNet with blocks deleted.

``to_ssd1b(unet)`` follows ``StableDiffusionModelHijack.convert_sdxl_to_ssd`` (modules/sd_hijack.py of WebUI
v1.10.1), which ``sd_models.load_model_weights`` calls when ``sd_models.set_model_type`` found an SDXL
checkpoint without ``middle_block.1.transformer_blocks.0.attn1.to_q.weight`` (``is_ssd``): it ``delattr``s
``middle_block`` '1' and '2', transformer blocks '4'..'9' of ``input_blocks[7|8][1]`` and ``output_blocks[0|1][1]``, and transformer block '1' of
``output_blocks[4][1]`` and ``output_blocks[5][1]``. The tiny SDXL layout has depth 2 at every level, so the
'4'..'9' deletions find nothing there (the real SDXL has depth 10 at that level); the others apply as in the
WebUI. ``delattr`` on an ``nn.ModuleList`` leaves ``len() == 1`` and makes ``[1]`` an IndexError.
"""
from __future__ import annotations

SSD_DELETED_WINDOW_BLOCKS = (("output_blocks", 4, 1), ("output_blocks", 5, 1))


def to_ssd1b(unet):
    delattr(unet.middle_block, "1")
    delattr(unet.middle_block, "2")
    for i in ("9", "8", "7", "6", "5", "4"):
        for blocks in (unet.input_blocks[7][1].transformer_blocks, unet.input_blocks[8][1].transformer_blocks,
                       unet.output_blocks[0][1].transformer_blocks, unet.output_blocks[1][1].transformer_blocks):
            if i in blocks._modules:
                delattr(blocks, i)
    delattr(unet.output_blocks[4][1].transformer_blocks, "1")
    delattr(unet.output_blocks[5][1].transformer_blocks, "1")
    return unet


def to_ssd1b_model(model):
    """The whole (tiny) model, as ``sd_models.load_model`` leaves it: UNet converted and ``is_ssd`` set."""
    to_ssd1b(model.model.diffusion_model)
    model.is_ssd = True
    return model
