"""Built-in WebUI features that change self-attention, as our features must know them (v1.10.1):
HyperTile (extensions-builtin/hypertile: settings `hypertile_enable_unet`, `..._secondpass`) tiles the UNet's
self-attention; ToMe (token merging: `p.get_token_merging_ratio(for_hr=...)`) merges its tokens."""
from __future__ import annotations

from modules import shared


def _registered_and_on(name: str) -> bool:
    """A setting counts only if registered (its extension is loaded): a stale value in config.json does not."""
    labels = getattr(shared.opts, "data_labels", None)
    if labels is not None and name not in labels:
        return False
    return bool(getattr(shared.opts, name, False))


def hypertile_unet_on(hires: bool) -> bool:
    return _registered_and_on("hypertile_enable_unet") or (hires and _registered_and_on("hypertile_enable_unet_secondpass"))


def token_merging_ratio(p, hires: bool) -> float:
    get_ratio = getattr(p, "get_token_merging_ratio", None)
    return float(get_ratio(for_hr=hires) if get_ratio is not None else getattr(shared.opts, "token_merging_ratio", 0) or 0)
