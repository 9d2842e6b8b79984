"""The suite's X/Y/Z behaviour through the plot's own flow (`xyz_grid_double.run_grid`, following scripts/xyz_grid.py
of v1.10.1): every cell runs on a shallow copy of `p` (shared `extra_generation_params`), the copies are never
closed, only the outer `p` is. Each cell must equal the same settings run alone (latents and infotext), so nothing
leaks between cells, and nothing stays patched or merged after the plot."""
import contextlib
import types

import numpy as np
import pytest
import torch
from PIL import Image

from modules import processing, script_callbacks, scripts, shared

import lib_hidiffusion as H
import xyz_grid_double
from support.generation import DEFAULTS, load_model, reset_host
from support.hidiffusion_webui_probe import load_fast_sd15
from support.iclight_fixtures import state_hash, write_offset_file
from support.scripts_loader import load_script, unload_callbacks

FILES = ("cfgpp_samplers.py", "hidiffusion.py", "iclight.py")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("ic-light")
    write_offset_file(str(path), "fc.safetensors", in_channels=8, seed=5)
    write_offset_file(str(path), "fbc.safetensors", in_channels=12, seed=6)
    return str(path)


@pytest.fixture(scope="module")
def suite(folder):
    shared.cmd_opts.iclight_dir = folder
    modules = {name: load_script(name) for name in FILES}
    yield types.SimpleNamespace(cfgpp=modules["cfgpp_samplers.py"], hid=modules["hidiffusion.py"],
                                ic=modules["iclight.py"])
    modules["hidiffusion.py"].CONTROLLER.release()
    modules["iclight.py"].MERGER.restore()
    for name in FILES:
        unload_callbacks(name)
    del shared.cmd_opts.iclight_dir


@pytest.fixture(autouse=True)
def _host(suite, folder):
    reset_host()
    shared.cmd_opts.iclight_dir = folder
    xyz = xyz_grid_double.install()
    suite.hid.register_axes()
    suite.ic.register_axes()
    yield xyz
    assert not scripts.reported_errors, scripts.reported_errors
    assert not script_callbacks.reported_errors, script_callbacks.reported_errors
    reset_host()


def _foreground():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    alpha = np.zeros((64, 64, 1), dtype=np.uint8)
    alpha[16:48, 16:48] = 255
    return Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA")


def _p(suite, hid=None, ic=None, **fields):
    """A txt2img p with HiDiffusion and IC-Light attached (UI values: `hid` / `ic` changes of their defaults)."""
    specs = [suite.hid.SPEC, suite.ic.SPEC]
    args = [spec.positional(spec.replace(spec.defaults(), **(changes or {}))) for spec, changes in zip(specs, (hid, ic))]
    p = processing.StableDiffusionProcessingTxt2Img(**{**DEFAULTS, "steps": 3, **fields})
    p.scripts = scripts.ScriptRunner([suite.hid.HiDiffusionScript(), suite.ic.ICLightScript()],
                                     arg_counts=[len(a) for a in args])
    p.script_args = [0, *args[0], *args[1]]
    return p


def _alone(xyz, make_p, cell, axes):
    """The cell's settings on a fresh p, run on its own as a plain generation."""
    p = make_p()
    for (label, values), value in zip(axes, (cell.x, cell.y)):
        xyz_grid_double.find_axis(xyz, label).apply(p, value, values)
    with contextlib.closing(p):
        return processing.process_images(p)


def _assert_cells_equal_alone(xyz, make_p, axes):
    cells = xyz_grid_double.run_grid(xyz, make_p(), *axes)
    assert all(c.error is None for c in cells), [c.error for c in cells]
    for cell in cells:
        alone = _alone(xyz, make_p, cell, axes)
        assert cell.processed.infotexts[0] == alone.infotexts[0], (cell.x, cell.y)
        assert torch.equal(cell.processed.latents, alone.latents), (cell.x, cell.y)
    return cells


def test_hidiffusion_axes_per_cell(suite, _host):
    """The UI leaves HiDiffusion off; its axes store overrides on each copy (which enable it there only)."""
    xyz = _host
    load_fast_sd15()
    unet = shared.sd_model.model.diffusion_model
    axes = [("HiDiffusion T1", ["1", "2"]), ("HiDiffusion T1/T2 given as", ["Steps"])]
    cells = _assert_cells_equal_alone(xyz, lambda: _p(suite), axes)
    assert ["HiDiffusion T1: 1.0" in c.processed.infotexts[0] for c in cells] == [True, False]
    assert not torch.equal(cells[0].processed.latents, cells[1].processed.latents)
    assert not H.is_patched(unet) and not suite.hid.CONTROLLER.state.armed
    plain = _p(suite)
    with contextlib.closing(plain):
        assert "HiDiffusion" not in processing.process_images(plain).infotexts[0], "the plot's p was not changed"


def test_hidiffusion_infotext_does_not_leak_between_cells(suite, _host):
    load_fast_sd15()
    _assert_cells_equal_alone(_host, lambda: _p(suite), [("HiDiffusion T1/T2 given as", ["Steps", "Auto"]),
                                                         ("HiDiffusion T1", ["1"])])


def test_iclight_model_axis_per_cell(suite, _host):
    xyz = _host
    load_model("sd15")
    before = state_hash(shared.sd_model.model.diffusion_model)
    on = dict(enabled=True, model="fc.safetensors", foreground=_foreground(), bg_source="Left Light")
    axes = [("IC-Light Model file", ["fbc.safetensors", "fc.safetensors"]), ("IC-Light Restore detail", ["True", "False"])]
    cells = _assert_cells_equal_alone(xyz, lambda: _p(suite, ic=on), axes)
    assert ["IC-Light mode: fbc" in c.processed.infotexts[0] for c in cells] == [True, False, True, False]
    suite.ic.MERGER.restore()
    assert state_hash(shared.sd_model.model.diffusion_model) == before


def test_sampler_axis_runs_cfgpp_and_base_cells(suite, _host):
    load_model("sd15")
    cells = _assert_cells_equal_alone(_host, lambda: _p(suite), [("Sampler", ["Euler", "Euler CFG++"]), ("Seed", ["1"])])
    assert "CFGpp lambda" in cells[1].processed.infotexts[0]


def test_cfgpp_infotext_does_not_leak_into_base_sampler_cells(suite, _host):
    load_model("sd15")
    _assert_cells_equal_alone(_host, lambda: _p(suite), [("Sampler", ["Euler CFG++", "Euler"]), ("Seed", ["1"])])


@pytest.mark.parametrize("feature", ["hidiffusion", "iclight"])
def test_a_failing_cell_leaves_nothing_for_the_next_cells(suite, _host, feature):
    """A cell that raises mid-sampling is blank and, as its copy is never closed and postprocess is skipped, its
    patches/merge stay until a later generation heals them: the next cell and a plain generation after the plot
    must still equal their runs alone."""
    xyz = _host
    if feature == "hidiffusion":
        load_fast_sd15()
        make_p = lambda: _p(suite, hid=dict(enabled=True))  # noqa: E731
    else:
        load_model("sd15")
        make_p = lambda: _p(suite, ic=dict(enabled=True, model="fc.safetensors", foreground=_foreground()))  # noqa: E731
    unet = shared.sd_model.model.diffusion_model
    plain = _p(suite)
    with contextlib.closing(plain):
        baseline = processing.process_images(plain).latents
    calls = []

    def fail_in_first_cell(module, args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("cell failure")
    handle = unet.register_forward_pre_hook(fail_in_first_cell)
    try:
        cells = xyz_grid_double.run_grid(xyz, make_p(), x=("Seed", ["1", "2"]))
    finally:
        handle.remove()
    assert cells[0].processed is None and "cell failure" in str(cells[0].error)
    assert torch.equal(cells[1].processed.latents, _alone(xyz, make_p, cells[1], [("Seed", ["1", "2"])]).latents)

    handle = unet.register_forward_pre_hook(lambda m, a: (_ for _ in ()).throw(RuntimeError("last cell failure")))
    try:
        failed = xyz_grid_double.run_grid(xyz, make_p(), x=("Seed", ["1"]))
    finally:
        handle.remove()
    assert failed[0].error is not None
    plain = _p(suite)
    with contextlib.closing(plain):
        assert torch.equal(processing.process_images(plain).latents, baseline), "healed by the next generation"
