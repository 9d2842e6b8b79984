"""Concat-conditioned model families (pure PyTorch; no WebUI, no diffusers).

Models whose first convolution takes extra channels concatenated to the latent: InstructPix2Pix-style edit models
(8: SD 1.5 ip2p, SDXL ip2p, CosXL Edit), IC-Light fc / fbc (8 / 12, in lib_iclight), SD 2 depth (5), the SD x4
upscaler (7), inpainting (9). One module per concept; the exports below come in small blocks, one per module,
in alphabetical order (add a block for a new module; keep each block's names alphabetical).
"""
__all__ = []

# batch: one concat row per image, rebuilt per latent size
from .batch import ConcatProvider, match_batch  # noqa: E402
__all__ += ["ConcatProvider", "match_batch"]

# detect: UNet families from state-dict shapes
from .detect import ModelKind, detect_model_kind  # noqa: E402
__all__ += ["ModelKind", "detect_model_kind"]

# errors
from .errors import ConcatError  # noqa: E402
__all__ += ["ConcatError"]

# keys: checkpoint key prefixes
from .keys import LDM_PREFIXES, strip_ldm_prefix  # noqa: E402
__all__ += ["LDM_PREFIXES", "strip_ldm_prefix"]

# rows: fit a concat to the latent that reaches the UNet
from .rows import fit  # noqa: E402
__all__ += ["fit"]

# tiling: overlapping tiles with a linear blend
from .tiling import Tile, blend, covered_area_ratio, plan  # noqa: E402
__all__ += ["Tile", "blend", "covered_area_ratio", "plan"]

# upscale_x4: the SD x4 upscaler, image in, 4x image out
from .upscale_x4 import SAMPLERS as X4_SAMPLERS, Runtime, X4Settings, X4Upscaler  # noqa: E402
__all__ += ["Runtime", "X4Settings", "X4Upscaler", "X4_SAMPLERS"]

# x4_models: the x4 upscaler's own UNet, VAE decoder and text encoder from its single file
from .x4_models import X4Models, build_models as build_x4_models, load_models as load_x4_models  # noqa: E402
__all__ += ["X4Models", "build_x4_models", "load_x4_models"]
