"""suite_glue.host: which WebUI family runs us (read once from the packages it loaded), and the A1111 host being
exactly the routes the scripts used before the seam."""
import sys

import pytest

from host_forge.install import _package, glue_host


@pytest.fixture(autouse=True)
def _forget():
    glue_host().forget()
    yield
    glue_host().forget()


def _fork(monkeypatch, model_code, version):
    forge = _package("modules_forge")
    if version is not None:
        forge.forge_version = _package("modules_forge.forge_version")
        forge.forge_version.version = version
        monkeypatch.setitem(sys.modules, "modules_forge.forge_version", forge.forge_version)
    monkeypatch.setitem(sys.modules, "modules_forge", forge)
    monkeypatch.setitem(sys.modules, model_code, _package(model_code))


@pytest.mark.parametrize("model_code,version,kind,name", [
    ("ldm_patched", "1.0.0v2-v1.10.1RC", "forge-ldm_patched", "reForge"),  # reForge modules_forge/forge_version.py
    ("ldm_patched", "classic", "forge-ldm_patched", "Forge Classic"),
    ("ldm_patched", "f0.0.17v1.8.0rc-latest-276-g29be1da7", "forge-ldm_patched", "Forge 1.x"),
    ("backend", "2.0.1v1.10.1", "forge-backend", "Forge / Forge Neo"),
])
def test_detects_forge_family(monkeypatch, model_code, version, kind, name):
    _fork(monkeypatch, model_code, version)
    family = glue_host().detect()
    assert (family.kind, family.name) == (kind, name)
    assert glue_host().current().is_forge


def test_a1111_without_modules_forge_and_detected_once(monkeypatch):
    host = glue_host()
    assert host.detect().kind == "a1111"
    current = host.current()
    assert current is host.current() and not current.is_forge
    _fork(monkeypatch, "ldm_patched", "classic")  # loaded later: the answer stays (detected once)
    assert host.current() is current
    host.forget()
    assert host.current().name == "Forge Classic"


def test_a1111_host_is_the_direct_route():
    host = glue_host().current()

    def sampler(model, x, sigmas, extra_args=None):
        return x
    assert host.guided_sampler(sampler) is sampler
    assert host.check(glue_host().CFGPP) is None and host.check(glue_host().HIDIFFUSION) is None
    assert host.check(glue_host().ICLIGHT) is None
    assert host.registered_label("Euler CFG++") == "Euler CFG++"
