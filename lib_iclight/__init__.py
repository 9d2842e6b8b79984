"""IC-Light core (pure PyTorch + numpy + PIL; no WebUI, no diffusers), on the shared concat core ``lib_concat``.

- :mod:`.model_file`   find / open / validate offset files (safetensors, diffusers or ldm keys)
- :mod:`.keymap`       diffusers <-> ldm UNet key names
- :mod:`.compat`       does a file fit the loaded UNet (SD 1.5 only) - checked before any change
- :mod:`.merge`        widen conv_in + add offsets in place; exact restore; no re-merge (``Merger``)
- :mod:`.conditioning` foreground / background -> concat latent, as the official demos build it (per-image
                       mapping and the provider from ``lib_concat.batch``)
- :mod:`.lighting`     the demos' light ramps and background sources
- :mod:`.detail`       high-frequency detail restore
- :mod:`.detect`       re-exports ``lib_concat.detect`` (4/5/7/8/9/12-channel UNet families)
"""
from .compat import is_float8, uses_float8
from .conditioning import (ConcatProvider, ConcatSpec, encode_images, fc_initial_latent, make_concat_spec, match_batch,
                           prepare_foreground, rembg_alpha, remover_available)
from .detail import restore_detail, restore_detail_tensor
from .detect import ModelKind, detect_model_kind
from .errors import ICLightError
from .images import fill_grey, images_to_tensor, resize_and_center_crop
from .lighting import (FBC_DEFAULT, FBC_SOURCES, FC_LIGHTS, fbc_background, fc_light_image, parse_fbc_source,
                       parse_fc_light)
from .merge import MergeHandle, Merger, active_handles, merge_offsets, restore_all
from .model_file import (DOWNLOAD_FROM, OFFICIAL_FILES, FileIdentity, OffsetFile, list_model_files,
                         open_offset_file, resolve_model_path)

__all__ = [
    "ConcatProvider", "ConcatSpec", "DOWNLOAD_FROM", "FBC_DEFAULT", "FBC_SOURCES", "FC_LIGHTS", "FileIdentity",
    "ICLightError", "MergeHandle", "Merger", "ModelKind", "OFFICIAL_FILES", "OffsetFile", "active_handles",
    "detect_model_kind", "encode_images", "fbc_background", "fc_initial_latent", "fc_light_image", "fill_grey",
    "images_to_tensor", "is_float8", "uses_float8",
    "list_model_files", "make_concat_spec", "match_batch", "merge_offsets", "open_offset_file",
    "parse_fbc_source", "parse_fc_light", "prepare_foreground", "rembg_alpha", "remover_available",
    "resize_and_center_crop", "resolve_model_path", "restore_all", "restore_detail", "restore_detail_tensor",
]
