"""Find, open and describe IC-Light offset files (safetensors only; tensors are read lazily).

An offset file holds, for every UNet parameter, a tensor that is *added* to the base weights; its
``conv_in`` weight is widened: 8 input channels for fc / fcon, 12 for fbc. The kind is read from
that shape, never from the file name. Accepted key names: diffusers (the official files), bare ldm,
or ldm prefixed ``diffusion_model.`` / ``model.diffusion_model.``.

Only ``.safetensors`` is read (no pickle: the WebUI rejects ``.pt`` files written by new torch).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Callable, Dict, Iterator, List, Tuple

import torch

from .errors import ICLightError
from .keymap import key_format, to_ldm_keys

DOWNLOAD_FROM = "https://huggingface.co/lllyasviel/ic-light"
OFFICIAL_FILES = ("iclight_sd15_fc.safetensors", "iclight_sd15_fcon.safetensors", "iclight_sd15_fbc.safetensors")
CONV_IN = "input_blocks.0.0"
KIND_BY_CHANNELS = {8: "fc", 12: "fbc"}
CHANNELS_BY_KIND = {v: k for k, v in KIND_BY_CHANNELS.items()}


@dataclasses.dataclass(frozen=True)
class FileIdentity:
    """What makes two opens 'the same file': resolved path, size and modification time (ns)."""
    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str) -> "FileIdentity":
        st = os.stat(path)
        return cls(os.path.realpath(path), st.st_size, st.st_mtime_ns)


@dataclasses.dataclass(frozen=True)
class OffsetFile:
    """A validated offset file. ``keys`` maps bare ldm key -> key in the file; ``shapes`` by ldm key."""
    path: str
    identity: FileIdentity
    kind: str
    in_channels: int
    key_format: str
    keys: Dict[str, str]
    shapes: Dict[str, Tuple[int, ...]]
    dtypes: Tuple[str, ...]

    @property
    def name(self) -> str:
        return os.path.splitext(os.path.basename(self.path))[0]

    @contextlib.contextmanager
    def reader(self, remap_bytes: int = None) -> Iterator[Callable[[str], torch.Tensor]]:
        """Yield ``get(ldm_key) -> CPU tensor``, reading one tensor at a time from the file.

        safetensors maps the file into memory and the pages it touched count as resident until the
        file is closed, so the file is re-opened after every ``remap_bytes`` read: peak memory stays
        at about one chunk (default: 1/16 of the file, 1 to 64 MiB) instead of the whole file."""
        if remap_bytes is None:
            remap_bytes = max(1 << 20, min(64 << 20, self.identity.size // 16))
        state = {"file": None, "read": 0}

        def close():
            if state["file"] is not None:
                state["file"].__exit__(None, None, None)
                state["file"] = None

        def get(ldm_key: str) -> torch.Tensor:
            if state["file"] is None or state["read"] >= remap_bytes:
                close()
                handle = _safe_open(self.path)
                state["file"], state["read"] = handle.__enter__(), 0
            try:
                tensor = state["file"].get_tensor(self.keys[ldm_key])
            except Exception as exc:  # safetensors raises its own error type
                raise ICLightError(f"IC-Light model file {self.path} could not be read ({exc}); "
                                   f"it is probably damaged: download it again from {DOWNLOAD_FROM}") from exc
            state["read"] += tensor.numel() * tensor.element_size()
            return tensor

        try:
            yield get
        finally:
            close()


def list_model_files(folder: str) -> List[str]:
    """Names of the .safetensors files in ``folder`` and its subfolders (relative, '/'-separated, sorted); hidden
    folders are skipped and symlinked subfolders not followed. Empty when the folder is missing."""
    if not folder or not os.path.isdir(folder):
        return []
    names = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        relative = os.path.relpath(root, folder)
        for f in files:
            if f.lower().endswith(".safetensors"):
                names.append(f if relative == "." else "/".join(relative.split(os.sep) + [f]))
    return sorted(names)


def _where_files_go(folder: str) -> str:
    return (f"Download {' / '.join(OFFICIAL_FILES)} from {DOWNLOAD_FROM} into {os.path.abspath(folder or '.')} "
            "(subfolders are fine) and choose one by its name there.")


def resolve_model_path(name: str, folder: str, where: str = "IC-Light model file") -> str:
    """Path of model ``name`` in ``folder``: a name as :func:`list_model_files` gives it ('\\' accepted for '/'),
    with or without the extension. Nothing outside the folder is ever looked at: absolute paths, '..', '.', '~' and
    names of missing files all get the same 'unknown model' :class:`ICLightError` (naming ``where``, the files
    found and where files go), so callers cannot probe which files exist elsewhere."""
    if not name:
        raise ICLightError(f"No IC-Light model file chosen. {_where_files_go(folder)}")
    parts = str(name).replace("\\", "/").split("/")
    available = list_model_files(folder)
    safe = not os.path.isabs(str(name)) and ":" not in parts[0] and \
        all(p not in ("", ".", "..") and not p.startswith("~") for p in parts)
    if safe:
        relative = "/".join(parts)
        for candidate in (relative, relative + ".safetensors"):
            if candidate in available:
                return os.path.join(folder, *candidate.split("/"))
        path = os.path.join(folder, *parts)
        if os.path.isfile(path) and not path.lower().endswith(".safetensors"):
            raise ICLightError(f"IC-Light model file {path} is not a .safetensors file; only safetensors files "
                               f"are read. Download the .safetensors version from {DOWNLOAD_FROM}.")
    if not available:
        raise ICLightError(f"{where}: unknown model '{name}': there are no IC-Light model files in "
                           f"{os.path.abspath(folder or '.')} (missing or empty folder). {_where_files_go(folder)}")
    raise ICLightError(f"{where}: unknown model '{name}' (not found in the folder {os.path.abspath(folder or '.')}). "
                       f"Files there: {', '.join(available)}. {_where_files_go(folder)}")


def _safe_open(path: str):
    from safetensors import safe_open
    try:
        return safe_open(path, framework="pt", device="cpu")
    except FileNotFoundError as exc:
        raise ICLightError(f"IC-Light model file {path} not found; download it from {DOWNLOAD_FROM}.") from exc
    except Exception as exc:
        raise ICLightError(f"IC-Light model file {path} is damaged or not a safetensors file ({exc}); "
                           f"download it again from {DOWNLOAD_FROM}.") from exc


def open_offset_file(path: str) -> OffsetFile:
    """Read the header of ``path`` (no tensor data) and validate it as an IC-Light offset file."""
    if not os.path.isfile(path):
        raise ICLightError(f"IC-Light model file {path} not found in the folder "
                           f"{os.path.dirname(os.path.abspath(path))}; download it from {DOWNLOAD_FROM}.")
    if not path.lower().endswith(".safetensors"):
        raise ICLightError(f"IC-Light model file {path} is not a .safetensors file; only safetensors files are "
                           f"read. Download the .safetensors version from {DOWNLOAD_FROM}.")
    identity = FileIdentity.of(path)
    with _safe_open(path) as f:
        try:
            names = list(f.keys())
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in names}
            dtypes = tuple(sorted({str(f.get_slice(k).get_dtype()) for k in names}))
        except Exception as exc:
            raise ICLightError(f"IC-Light model file {path} is damaged ({exc}); "
                               f"download it again from {DOWNLOAD_FROM}.") from exc
    if not names:
        raise ICLightError(f"IC-Light model file {path} holds no tensors; download it again from {DOWNLOAD_FROM}.")
    try:
        to_file = to_ldm_keys(names)
    except KeyError as exc:
        raise ICLightError(f"{path} is not an IC-Light UNet offset file: {exc.args[0]}. "
                           f"Use {' / '.join(OFFICIAL_FILES)} from {DOWNLOAD_FROM}.") from None
    fmt = key_format(names)
    conv = to_file.get(CONV_IN + ".weight")
    if conv is None:
        raise ICLightError(f"{path} has no first-convolution (conv_in) tensor, so it is not an IC-Light offset "
                           f"file. Use {' / '.join(OFFICIAL_FILES)} from {DOWNLOAD_FROM}.")
    conv_shape = shapes[conv]
    in_ch = conv_shape[1] if len(conv_shape) == 4 else None
    if in_ch not in KIND_BY_CHANNELS:
        raise ICLightError(f"{path}: its first convolution takes {in_ch} input channels; IC-Light files take 8 "
                           f"(fc / fcon) or 12 (fbc). Use {' / '.join(OFFICIAL_FILES)} from {DOWNLOAD_FROM}.")
    return OffsetFile(path=path, identity=identity, kind=KIND_BY_CHANNELS[in_ch], in_channels=in_ch,
                      key_format=fmt, keys=to_file, shapes={k: shapes[v] for k, v in to_file.items()},
                      dtypes=dtypes)
