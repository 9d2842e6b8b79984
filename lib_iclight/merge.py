"""Merge an IC-Light offset file into a loaded ldm UNet in place, and undo it exactly.

What :func:`merge_offsets` changes, and what :meth:`MergeHandle.restore` puts back:

- ``unet.input_blocks[0][0]`` is replaced by a new ``nn.Conv2d`` with 8 (fc) or 12 (fbc) input
  channels: base channels copied, new channels zero, then the file's offset added (the official
  demo's widening). The original conv module is moved to the CPU and put back (same object). The new conv
  takes the original's ``padding_mode`` whenever :meth:`Merger.ensure` runs: hosts that switch padding
  modes on a module list made before the merge (the WebUI's Tiling: ``sd_hijack.apply_circular``) still
  reach the original, not the new conv.
- every other UNet tensor gets ``tensor += offset`` in place, one tensor at a time; a CPU copy of
  the original is kept (nothing extra stays on the GPU) and copied back bit-exactly on restore.
- ``unet.in_channels`` and, when the model has a DiffusionWrapper, ``conditioning_key`` are set to
  the widened count and ``'hybrid'`` (ldm then concatenates ``c_concat`` to ``x`` on every call);
  both are restored.
- ``load_state_dict`` of the model (and of the UNet) is wrapped by an instance attribute that first
  restores, so loading another checkpoint into the same object finds the original shapes; the
  attribute is deleted on restore.

:class:`Merger` keeps at most one merge alive and skips re-merging when the same file (path, size,
mtime) is already merged, intact, into the same UNet; ``merge_count`` / ``restore_count`` count work.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional, Union

import torch
from torch import nn

from .compat import check_compatible, find_unet
from .model_file import CONV_IN, FileIdentity, OffsetFile, open_offset_file

_ACTIVE: Dict[int, "MergeHandle"] = {}
_HYBRID = "hybrid"


def _probe(tensors: List[torch.Tensor]) -> torch.Tensor:
    """First, middle and last element of every tensor, as one CPU tensor (a cheap fingerprint)."""
    views = []
    for t in tensors:
        flat = t.detach().reshape(-1)
        n = flat.numel()
        views += [flat[:1], flat[n // 2:n // 2 + 1], flat[n - 1:]]
    if not views:
        return torch.empty(0)
    if len({v.dtype for v in views}) > 1:
        views = [v.float() for v in views]
    if len({v.device for v in views}) > 1:  # e.g. the WebUI's --lowvram keeps blocks on different devices
        views = [v.cpu() for v in views]
    return torch.cat(views).cpu()


def _cpu_backup(tensors: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Bit-exact CPU copies of ``tensors`` as views into ONE byte buffer: a single allocation, so the
    per-tensor offset reads that follow reuse the same heap space instead of fragmenting around
    hundreds of backups (which made the peak ~2x the UNet instead of ~1x)."""
    spans, total = [], 0
    for key, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        spans.append((key, t, total, nbytes))
        total += (nbytes + 63) // 64 * 64
    buffer = torch.empty(total, dtype=torch.uint8)
    out = {}
    for key, t, start, nbytes in spans:
        view = buffer[start:start + nbytes].view(t.dtype).view(t.shape)
        view.copy_(t.detach())
        out[key] = view
    return out


class MergeHandle:
    """One live merge. ``restore()`` is idempotent and exact; ``is_intact()`` checks it still holds."""

    def __init__(self, model: nn.Module, unet: nn.Module, wrapper, offset: OffsetFile,
                 after_restore: Optional[Callable[[nn.Module], None]] = None):
        self.model, self.unet, self.wrapper, self.offset = model, unet, wrapper, offset
        self.after_restore = after_restore
        self.identity = offset.identity
        self.kind = offset.kind
        self.in_channels = offset.in_channels
        self.active = True
        self._backups: Dict[str, torch.Tensor] = {}
        self._orig_conv: Optional[nn.Module] = None
        self._new_conv: Optional[nn.Module] = None
        self._orig_in_channels = getattr(unet, "in_channels", None)
        self._had_key = wrapper is not None and hasattr(wrapper, "conditioning_key")
        self._orig_key = getattr(wrapper, "conditioning_key", None) if self._had_key else None
        self._wrapped_loaders: List[nn.Module] = []
        self._probe_keys: List[str] = []
        self._probe_values: Optional[torch.Tensor] = None

    # --- merge -------------------------------------------------------------------------------
    def _merge(self, tensors: Dict[str, torch.Tensor]) -> None:
        conv_w, conv_b = CONV_IN + ".weight", CONV_IN + ".bias"
        keys = [k for k in tensors if k not in (conv_w, conv_b)]
        with self.offset.reader() as get, torch.no_grad():
            self._backups = _cpu_backup({k: tensors[k] for k in keys})
            self._widen_conv(get(conv_w), get(conv_b) if conv_b in tensors else None)
            for key in keys:
                tensor = tensors[key]
                delta = get(key)
                tensor.add_(delta.to(device=tensor.device))
                del delta
        self._set_attributes()
        self._wrap_loaders()
        self._probe_keys = list(self._backups)
        self._probe_values = self._fingerprint()
        _ACTIVE[id(self.unet)] = self

    def _widen_conv(self, delta_w: torch.Tensor, delta_b: Optional[torch.Tensor]) -> None:
        orig = self.unet.input_blocks[0][0]
        w = orig.weight
        new = nn.Conv2d(self.in_channels, orig.out_channels, orig.kernel_size, orig.stride, orig.padding,
                        orig.dilation, orig.groups, bias=orig.bias is not None, padding_mode=orig.padding_mode,
                        device=w.device, dtype=w.dtype)
        new.weight.zero_()
        new.weight[:, :orig.in_channels].copy_(w)
        new.weight.add_(delta_w.to(device=w.device))
        new.weight.requires_grad_(w.requires_grad)
        if orig.bias is not None:
            new.bias.copy_(orig.bias)
            if delta_b is not None:
                new.bias.add_(delta_b.to(device=w.device))
            new.bias.requires_grad_(orig.bias.requires_grad)
        new.train(orig.training)
        self.unet.input_blocks[0][0] = new
        self._orig_conv, self._new_conv = orig, new
        orig.to("cpu")

    def _set_attributes(self) -> None:
        if self._orig_in_channels is not None:
            self.unet.in_channels = self.in_channels
        if self._had_key:
            self.wrapper.conditioning_key = _HYBRID

    def _wrap_loaders(self) -> None:
        for owner in {id(m): m for m in (self.model, self.unet)}.values():
            if "load_state_dict" in owner.__dict__:
                continue
            bound = owner.load_state_dict
            handle = self

            def load_state_dict(*args, _bound=bound, **kwargs):
                handle.restore()
                return _bound(*args, **kwargs)

            owner.__dict__["load_state_dict"] = load_state_dict
            self._wrapped_loaders.append(owner)

    def _fingerprint(self) -> torch.Tensor:
        tensors = self.unet.state_dict(keep_vars=True)
        return _probe([self._new_conv.weight] + [tensors[k] for k in self._probe_keys])

    def follow_padding(self) -> None:
        """Give the widened conv the original conv's current ``padding_mode`` ('zeros' / 'circular')."""
        if self.active and self._new_conv is not None and self._orig_conv is not None:
            self._new_conv.padding_mode = self._orig_conv.padding_mode

    # --- checks ------------------------------------------------------------------------------
    def is_intact(self) -> bool:
        """True while the merge is live and unchanged: same conv module, attributes, weight probes."""
        if not self.active or self.unet.input_blocks[0][0] is not self._new_conv:
            return False
        if self._had_key and getattr(self.wrapper, "conditioning_key", None) != _HYBRID:
            return False
        try:
            return torch.equal(self._fingerprint(), self._probe_values)
        except (KeyError, RuntimeError):
            return False

    # --- restore -----------------------------------------------------------------------------
    def restore(self) -> bool:
        """Undo the merge exactly; returns False when there was nothing to undo."""
        if not self.active:
            return False
        self.active = False
        for owner in self._wrapped_loaders:
            owner.__dict__.pop("load_state_dict", None)
        self._wrapped_loaders = []
        tensors = self.unet.state_dict(keep_vars=True)
        with torch.no_grad():
            for key, backup in self._backups.items():
                target = tensors.get(key)
                if target is None or target.device.type == "meta":
                    continue
                target.copy_(backup)
            if self._orig_conv is not None:
                if self.unet.input_blocks[0][0] is self._new_conv:
                    device = self._new_conv.weight.device
                    if device.type != "meta":
                        self._orig_conv.to(device)
                    self.unet.input_blocks[0][0] = self._orig_conv
        if self._orig_in_channels is not None:
            self.unet.in_channels = self._orig_in_channels
        if self._had_key and getattr(self.wrapper, "conditioning_key", None) == _HYBRID:
            self.wrapper.conditioning_key = self._orig_key
        self._backups = {}
        self._orig_conv = self._new_conv = None
        self._probe_values = None
        if _ACTIVE.get(id(self.unet)) is self:
            del _ACTIVE[id(self.unet)]
        if self.after_restore is not None:
            self.after_restore(self.unet)
        return True


def merge_offsets(model: nn.Module, offset: OffsetFile,
                  after_restore: Optional[Callable[[nn.Module], None]] = None) -> MergeHandle:
    """Merge ``offset`` into ``model`` (LatentDiffusion, DiffusionWrapper or bare ldm UNet) in place.

    Validates first (raises :class:`ICLightError`, model untouched). A merge left by anyone on the same
    UNet is restored first. A failure half-way rolls back before re-raising. ``after_restore(unet)`` runs
    after every restore of this merge, whatever triggers it (e.g. to drop caches other code keeps of the
    merged weights)."""
    unet, wrapper = find_unet(model)
    stale = _ACTIVE.get(id(unet))
    if stale is not None and stale.unet is unet:
        stale.restore()
    tensors = check_compatible(unet, offset)
    handle = MergeHandle(model, unet, wrapper, offset, after_restore)
    try:
        handle._merge(tensors)
    except BaseException:
        handle.restore()
        raise
    return handle


def active_handles() -> List[MergeHandle]:
    return list(_ACTIVE.values())


def restore_all() -> int:
    """Restore every live merge (heals merges left by an interrupted run). Returns how many."""
    return sum(h.restore() for h in list(_ACTIVE.values()))


class Merger:
    """Keeps one merge alive across generations; re-merges only when file, UNet or weights changed."""

    def __init__(self, before_merge: Optional[Callable[[nn.Module], None]] = None,
                 after_restore: Optional[Callable[[nn.Module], None]] = None):
        """``before_merge(unet)`` runs just before each (re-)merge, ``after_restore(unet)`` after each restore
        (any trigger). The WebUI adapter uses them to keep the built-in LoRA's weight backups consistent."""
        self.before_merge, self.after_restore = before_merge, after_restore
        self.handle: Optional[MergeHandle] = None
        self.merge_count = 0
        self.restore_count = 0
        self._opened: Dict[object, OffsetFile] = {}

    def open(self, path: str) -> OffsetFile:
        """Open and validate ``path`` (header only), cached by file identity."""
        if not os.path.isfile(path):
            return open_offset_file(path)  # raises the 'not found' error
        ident = FileIdentity.of(path)
        cached = self._opened.get(ident)
        if cached is None:
            cached = open_offset_file(path)
            self._opened = {ident: cached}
        return cached

    def ensure(self, model: nn.Module, offset: Union[OffsetFile, str]) -> MergeHandle:
        """Make sure ``offset`` is merged into ``model``; merge at most once per change."""
        if not isinstance(offset, OffsetFile):
            offset = self.open(offset)
        unet, _ = find_unet(model)
        h = self.handle
        if h is not None and h.active and h.unet is unet and h.identity == offset.identity and h.is_intact():
            h.follow_padding()
            return h
        self.restore()
        if self.before_merge is not None:
            self.before_merge(unet)
        self.handle = merge_offsets(model, offset, self.after_restore)
        self.handle.follow_padding()
        self.merge_count += 1
        return self.handle

    def restore(self) -> bool:
        """Undo the current merge (if any). Returns True when something was restored."""
        h, self.handle = self.handle, None
        if h is not None and h.restore():
            self.restore_count += 1
            return True
        return False

    def is_merged(self, model: nn.Module = None) -> bool:
        h = self.handle
        if h is None or not h.active:
            return False
        return model is None or find_unet(model)[0] is h.unet
