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

# depth: SD 2 depth conditioning from a user's depth map
from .depth import DepthSpec, depth_array, provider as depth_provider  # noqa: E402
__all__ += ["DepthSpec", "depth_array", "depth_provider"]

# detect: UNet families from state-dict shapes
from .detect import ModelKind, detect_model_kind  # noqa: E402
__all__ += ["ModelKind", "detect_model_kind"]

# edit_family: InstructPix2Pix-style edit models (SD 1.5 ip2p, SDXL ip2p, CosXL Edit) from checkpoint keys
from .edit_family import (COSXL_EDIT, FAMILIES as EDIT_FAMILIES, SD15_IP2P, SDXL_IP2P, EditCheckpoint,  # noqa: E402
                          EditFamily, classify_checkpoint)
__all__ += ["COSXL_EDIT", "EDIT_FAMILIES", "EditCheckpoint", "EditFamily", "SD15_IP2P", "SDXL_IP2P",
            "classify_checkpoint"]

# edit_guidance: image guidance of edit models (and CFG++ on them: the module doc)
from .edit_guidance import combine_edit, edit_rows  # noqa: E402
__all__ += ["combine_edit", "edit_rows"]

# edit_image: the input-image latent, resize rule, per image
from .edit_image import EditImages, check_size, image_latent  # noqa: E402
__all__ += ["EditImages", "check_size", "image_latent"]

# edm: continuous EDM v-prediction as a k-diffusion denoiser (CosXL)
from .edm import EDMVDenoiser, edm_v_scalings, karras_sigmas  # noqa: E402
__all__ += ["EDMVDenoiser", "edm_v_scalings", "karras_sigmas"]

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

# vae: the posterior mode of a KL-VAE under any host wrapper
from .vae import posterior_mode  # noqa: E402
__all__ += ["posterior_mode"]

# x4_models: the x4 upscaler's own UNet, VAE decoder and text encoder from its single file
from .x4_models import X4Models, build_models as build_x4_models, load_models as load_x4_models  # noqa: E402
__all__ += ["X4Models", "build_x4_models", "load_x4_models"]
