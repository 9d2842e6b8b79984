"""IC-Light merge cost on an SD 1.5-size UNet (real dims: 320 channels, (1, 2, 4, 4), 2 res blocks,
8 heads, context 768) with random fp16 weights and a random fp16 offset file in diffusers key names,
like the official ``iclight_sd15_fc.safetensors``.

Numbers (one run, same process):
- ``merge_seconds``: first ``Merger.ensure`` (header read, validation, widen conv_in, add 686 offsets)
- ``noop_ensure_seconds``: the next generation's ``ensure`` with the same file (intactness probe only)
- ``restore_seconds``: ``Merger.restore`` (copy the CPU backups back, put the original conv back)
- ``extra_memory_ratio``: (peak process RSS during the merge - RSS before) / UNet bytes; the CPU
  backup of the originals alone is 1.0 here because this bench's UNet lives on the CPU (on a GPU
  host that 1.0 is in host RAM and the GPU gains only the widened conv)
- ``backup_ratio``: bytes of CPU backups / UNet bytes
- ``demo_style_extra_memory_ratio``: the same measure for the official demo's way (whole file loaded,
  ``merged = origin + offset`` for every key, no backup, no restore), for comparison
- ``restored_exactly``: 1.0 when the state dict after restore equals the one before, bit for bit
Peak RSS is read from VmHWM after resetting it (``/proc/self/clear_refs``), or by a sampling thread.
"""
from __future__ import annotations

import gc
import os
import tempfile
import threading
import time

import torch

SD15 = dict(image_size=64, in_channels=4, out_channels=4, model_channels=320, attention_resolutions=[4, 2, 1],
            num_res_blocks=2, channel_mult=[1, 2, 4, 4], num_heads=8, use_spatial_transformer=True,
            transformer_depth=1, context_dim=768, use_checkpoint=False, legacy=False)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _hwm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def _trim() -> None:
    """Give freed heap memory back to the OS (glibc), so one measurement does not hide in another's free space."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakRSS:
    """Peak RSS over a block: VmHWM after a reset where the kernel allows it, else a 1 ms sampler."""

    def __enter__(self):
        gc.collect()
        _trim()
        self.before = _rss_bytes()
        self.hwm = _reset_peak()
        self.peak = self.before
        self._stop = threading.Event()
        if not self.hwm:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc):
        if self.hwm:
            self.peak = max(_hwm_bytes(), _rss_bytes())
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss_bytes())
        self.extra = self.peak - self.before


def _random_unet(kwargs: dict, dtype: torch.dtype, seed: int = 0):
    from ldm.modules.diffusionmodules.openaimodel import UNetModel
    with torch.device("meta"):
        unet = UNetModel(**kwargs)
    unet = unet.to_empty(device="cpu").to(dtype).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in unet.parameters():
            p.normal_(0, 0.02, generator=gen) if p.dtype == torch.float32 else \
                p.copy_(torch.empty(p.shape).normal_(0, 0.02, generator=gen))
    return unet


def _write_offsets(unet, path: str, in_channels: int, dtype: torch.dtype, seed: int = 1) -> None:
    from safetensors.torch import save_file
    from lib_iclight.keymap import ldm_to_diffusers
    names = ldm_to_diffusers(unet.state_dict().keys())
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for key, value in unet.state_dict().items():
        shape = list(value.shape)
        if key == "input_blocks.0.0.weight":
            shape[1] = in_channels
        tensors[names[key]] = torch.empty(shape).normal_(0, 0.01, generator=gen).to(dtype)
    save_file(tensors, path)


def _hash(module) -> int:
    import hashlib
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return int.from_bytes(digest.digest()[:8], "little")


def _demo_style_extra(unet, path: str) -> int:
    """Peak extra RSS of the demo's merge: ``load_file`` + ``{k: origin[k] + offset[k]}`` (diffusers names)."""
    from safetensors.torch import load_file
    from lib_iclight.keymap import ldm_to_diffusers
    names = ldm_to_diffusers(unet.state_dict().keys())
    with PeakRSS() as mem:
        offsets = load_file(path)
        origin = unet.state_dict()
        merged = {}
        for key, value in origin.items():
            delta = offsets[names[key]]
            if delta.shape != value.shape:  # widened conv_in: zero-padded base, as the demo builds it
                value = torch.nn.functional.pad(value, (0, 0, 0, 0, 0, delta.shape[1] - value.shape[1]))
            merged[key] = value + delta
        del offsets, merged
    return mem.extra


def run(quick: bool = False) -> dict:
    from lib_iclight import Merger
    kwargs = dict(SD15, model_channels=32, num_heads=2) if quick else dict(SD15)
    dtype = torch.float16
    unet = _random_unet(kwargs, dtype)
    unet_bytes = sum(p.numel() * p.element_size() for p in unet.parameters())
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "iclight_sd15_fc.safetensors")
        _write_offsets(unet, path, 8, dtype)
        gc.collect()
        before = _hash(unet)
        merger = Merger()
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            handle = merger.ensure(unet, path)
            merge_s = time.perf_counter() - t0
        backup_bytes = sum(b.numel() * b.element_size() for b in handle._backups.values())
        t0 = time.perf_counter()
        merger.ensure(unet, path)
        noop_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        merger.restore()
        restore_s = time.perf_counter() - t0
        exact = float(_hash(unet) == before and merger.merge_count == 1)
        demo_extra = _demo_style_extra(unet, path)
    return {
        "unet_parameters_m": sum(p.numel() for p in unet.parameters()) / 1e6,
        "unet_megabytes": unet_bytes / 2**20,
        "merge_seconds": merge_s,
        "noop_ensure_seconds": noop_s,
        "restore_seconds": restore_s,
        "extra_memory_ratio": mem.extra / unet_bytes,
        "backup_ratio": backup_bytes / unet_bytes,
        "peak_rss_from_vmhwm": float(mem.hwm),
        "demo_style_extra_memory_ratio": demo_extra / unet_bytes,
        "restored_exactly": exact,
    }


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=2))
