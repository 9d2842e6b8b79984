"""The WebUI's built-in LoRA extension (extensions-builtin/Lora/networks.py) and weight merges of our own.

LoRA applies itself lazily on a layer's forward after backing up that layer's weights (`network_weights_backup`),
and restores them from the backup when its set of networks changes. A feature that merges into the same weights
must merge into LoRA-free weights and make LoRA forget backups that no longer match. Nothing happens where the
built-in extension is not loaded.

LoRA's restore copies into the parameters in place without `no_grad` of its own (the WebUI calls it only while
sampling, with grad off); our hooks run with grad on, so every call here is wrapped in `torch.no_grad()`."""
from __future__ import annotations

import sys

import torch


def _networks():
    module = sys.modules.get("networks")
    if module is None:
        try:
            import networks as module  # importable only where the built-in Lora extension is loaded
        except Exception:
            return None
    needed = ("network_restore_weights_from_backup", "network_reset_cached_weight")
    return module if all(hasattr(module, n) for n in needed) else None


def _lora_modules(root):
    for module in root.modules():
        if getattr(module, "network_weights_backup", None) is not None or \
                getattr(module, "network_bias_backup", None) is not None:
            yield module


def unapply(root) -> None:
    """Put LoRA's backed-up weights back under `root` and drop its cache (LoRA re-applies on the next forward,
    backing up the weights as they are then)."""
    networks = _networks()
    if networks is None:
        return
    with torch.no_grad():
        for module in list(_lora_modules(root)):
            networks.network_restore_weights_from_backup(module)
            networks.network_reset_cached_weight(module)


def forget(root) -> None:
    """After our merge was undone, LoRA's backups under `root` hold merged weights: drop them."""
    networks = _networks()
    if networks is None:
        return
    for module in list(_lora_modules(root)):
        networks.network_reset_cached_weight(module)
