"""IC-Light through the WebUI host double: a model folder with synthetic offset files, the script loaded as the
WebUI loads it, the demo's foreground/encoding formulas, a UNet spy, and `generate` (API-style dict args).

Test modules import the pytest fixtures by name: `from support.iclight_webui import folder, script, host`."""
from __future__ import annotations

import base64
import io
import types

import numpy as np
import pytest
import torch
from PIL import Image

from modules import script_callbacks, shared

from .generation import img2img, load_model, reset_host, txt2img
from .iclight_fixtures import write_offset_file
from .scripts_loader import load_script, unload_callbacks

SCRIPT_FILE = "iclight.py"


def make_folder(path) -> types.SimpleNamespace:
    """fc.safetensors (8 channels, seed 5), fbc.safetensors (12, seed 6) and a corrupt file in `path`."""
    fc_path, fc_offsets = write_offset_file(str(path), "fc.safetensors", in_channels=8, seed=5)
    fbc_path, fbc_offsets = write_offset_file(str(path), "fbc.safetensors", in_channels=12, seed=6)
    (path / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    return types.SimpleNamespace(path=str(path), fc=fc_path, fbc=fbc_path,
                                 offsets={"fc": fc_offsets, "fbc": fbc_offsets})


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("ic-light"))


@pytest.fixture(scope="module")
def script(folder):
    shared.cmd_opts.iclight_dir = folder.path
    module = load_script(SCRIPT_FILE)
    yield module
    module.MERGER.restore()
    unload_callbacks(SCRIPT_FILE)
    del shared.cmd_opts.iclight_dir


@pytest.fixture(autouse=True)
def host(script, folder):
    """A fresh tiny SD 1.5 model per test (on_model_loaded restores the previous test's merge); no script errors."""
    reset_host()
    shared.cmd_opts.iclight_dir = folder.path
    load_model("sd15")
    yield
    assert not script_callbacks.reported_errors, script_callbacks.reported_errors
    reset_host()


def rgba_image(seed: int, size=(64, 64)) -> Image.Image:
    """Random colours with a soft disc of alpha (so no background remover is needed)."""
    w, h = size
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(xx - w / 2 + seed, yy - h / 2) / (min(w, h) / 2)
    alpha = np.clip((1.0 - r) * 400, 0, 255).astype(np.uint8)
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


def b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def demo_foreground(image: Image.Image) -> np.ndarray:
    """The demo's run_rmbg with a known alpha: 127 + (rgb - 127) * alpha, uint8."""
    array = np.asarray(image).astype(np.float32)
    return np.clip(127 + (array[..., :3] - 127) * (array[..., 3:] / 255.0), 0, 255).astype(np.uint8)


def encode(model, images) -> torch.Tensor:
    """The demo's encoding: x / 127 - 1, VAE posterior mode, * scale factor."""
    x = torch.stack([torch.from_numpy(np.ascontiguousarray(i)).float() / 127.0 - 1.0 for i in images]).movedim(-1, 1)
    return model.encode_first_stage(x).mode() * model.scale_factor


def defaults(script):
    return script.SPEC.positional(script.SPEC.defaults())


def api_args(script, values: dict) -> list:
    """What the API puts in the script's slots for `{"args": [values]}`: the dict first, UI defaults after."""
    return [values] + defaults(script)[1:]


def generate(script, values=None, positional=None, mode="txt2img", **fields):
    fields.setdefault("steps", 3)
    args = positional if positional is not None else api_args(script, values or {})
    run = txt2img if mode == "txt2img" else img2img
    return run(script_list=[script.ICLightScript()], script_args=args, arg_counts=[len(args)], **fields)


def fc_on(**changes):
    return {"enabled": True, "model": "fc.safetensors", "foreground": b64(rgba_image(1)), **changes}


class UNetSpy:
    """Records the UNet's inputs (x with the concat channels, timesteps, context) and outputs."""

    def __init__(self, model=None, raise_at=None):
        self.unet = (model or shared.sd_model).model.diffusion_model
        self.calls, self.raise_at = [], raise_at
        self.handles = [self.unet.register_forward_hook(self._hook, with_kwargs=True),
                        self.unet.register_forward_pre_hook(self._pre, with_kwargs=True)]

    def _pre(self, module, args, kwargs):
        if self.raise_at is not None and len(self.calls) == self.raise_at:
            self.raise_at = None
            raise RuntimeError("UNet failed mid-sampling (test)")

    def _hook(self, module, args, kwargs, output):
        context = kwargs.get("context")
        self.calls.append(types.SimpleNamespace(x=args[0].detach().clone(), t=args[1].detach().clone(),
                                                context=context.detach().clone(), out=output.detach().clone()))

    def remove(self):
        for h in self.handles:
            h.remove()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
