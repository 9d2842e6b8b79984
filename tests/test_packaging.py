"""Packaging: the cores import without the WebUI, our scripts get our packages even when another extension's
package of the same name was imported first, install.py installs nothing on a stock WebUI, preload adds the flags,
and the bench CLI answers."""
import argparse
import importlib.util
import os
import subprocess
import sys
import textwrap
import types

import pytest

from support.scripts_loader import load_script, unload_callbacks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORES = ("lib_hidiffusion", "lib_cfgpp", "lib_iclight", "lib_concat")


@pytest.mark.parametrize("package", CORES)
def test_core_imports_with_the_webui_unimportable(package):
    code = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        class NoWebUI:
            def find_spec(self, name, path=None, target=None):
                if name == "modules" or name.startswith("modules.") or name in ("gradio", "k_diffusion", "diffusers"):
                    raise ImportError("the WebUI is not importable here: " + name)
        sys.meta_path.insert(0, NoWebUI())
        sys.path = [p for p in sys.path if "tests" not in p]
        pkg = importlib.import_module("{package}")
        for info in pkgutil.walk_packages(pkg.__path__, "{package}."):
            importlib.import_module(info.name)
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr


def _install_foreign_packages(tmp_path, monkeypatch):
    """Another extension's packages named like ours, imported first (as when its scripts loaded earlier)."""
    for name in (*CORES, "suite_glue"):
        pkg = tmp_path / name
        pkg.mkdir()
        (pkg / "__init__.py").write_text("FOREIGN = True\n")
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in (*CORES, "suite_glue"):
        assert getattr(importlib.import_module(name), "FOREIGN", False)


def test_suite_import_ignores_a_foreign_package_of_the_same_name(tmp_path, monkeypatch):
    _install_foreign_packages(tmp_path, monkeypatch)
    from hdsuite_imports import suite_import
    for name in (*CORES, "suite_glue"):
        module = suite_import(name)
        assert not getattr(module, "FOREIGN", False)
        assert os.path.dirname(module.__file__) == os.path.join(ROOT, name)


def test_scripts_load_our_packages_despite_foreign_ones(tmp_path, monkeypatch):
    scripts_dir = os.path.join(ROOT, "scripts")
    files = sorted(f for f in os.listdir(scripts_dir) if f.endswith(".py"))
    if not files:
        pytest.skip("no scripts yet")
    _install_foreign_packages(tmp_path, monkeypatch)
    for filename in files:
        module = load_script(filename)
        modules_used = [v for v in vars(module).values() if isinstance(v, types.ModuleType)]
        ours = [m for m in modules_used if m.__name__.startswith("hdsuite_private.")]
        assert ours, f"{filename} must import its packages through hdsuite_imports.suite_import"
        for m in ours:
            assert not getattr(m, "FOREIGN", False) and m.__file__.startswith(ROOT), m.__file__
        plain = [m.__name__ for m in modules_used if m.__name__.split(".")[0] in (*CORES, "suite_glue")]
        assert not plain, f"{filename} imported {plain} by their shared top-level names"
        unload_callbacks(filename)


def test_install_py_installs_nothing_on_a_stock_webui(monkeypatch):
    installed = []
    launch = types.SimpleNamespace(is_installed=lambda name: True, run_pip=lambda *a, **k: installed.append(a))
    monkeypatch.setitem(sys.modules, "launch", launch)
    spec = importlib.util.spec_from_file_location("suite_install", os.path.join(ROOT, "install.py"))
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert installed == []


def test_preload_adds_model_folder_flags():
    spec = importlib.util.spec_from_file_location("suite_preload", os.path.join(ROOT, "preload.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parser = argparse.ArgumentParser()
    module.preload(parser)
    assert parser.parse_args(["--iclight-dir", "/x"]).iclight_dir == "/x"
    assert parser.parse_args([]).iclight_dir is None


def test_bench_cli_rejects_unknown_features():
    out = subprocess.run([sys.executable, "-m", "bench", "nonsense"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and "unknown feature" in out.stderr


@pytest.mark.parametrize("filename, title", [("hidiffusion.py", "HiDiffusion"), ("iclight.py", "IC-Light"),
                                             ("edit_models.py", "Edit model"), ("depth.py", "Depth"),
                                             ("upscaler_x4.py", "SD x4 upscaler")])
def test_each_feature_script_exposes_exactly_one_script_class(filename, title):
    """The WebUI instantiates every Script subclass bound in a script module: one per feature, always visible."""
    from modules import scripts
    module = load_script(filename)
    try:
        classes = [v for v in vars(module).values()
                   if isinstance(v, type) and issubclass(v, scripts.Script) and v is not scripts.Script]
        assert len(classes) == 1
        script = classes[0]()
        assert script.title() == title and script.show(False) is scripts.AlwaysVisible
    finally:
        unload_callbacks(filename)
