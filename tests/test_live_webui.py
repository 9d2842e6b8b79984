"""Live checks against a running WebUI with this extension installed; skipped unless WEBUI_URL is set
(e.g. WEBUI_URL=http://127.0.0.1:7860 bash tests/run.sh tests/test_live_webui.py). They use the public API only."""
import json
import os
import urllib.error
import urllib.request

import pytest

URL = os.environ.get("WEBUI_URL", "").rstrip("/")
pytestmark = pytest.mark.skipif(not URL, reason="WEBUI_URL not set: no running WebUI to test against")


def _call(path, payload=None, timeout=600):
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(URL + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def test_cfgpp_samplers_are_listed():
    names = {s["name"] for s in _call("/sdapi/v1/samplers")}
    assert {"Euler CFG++", "Euler a CFG++", "DPM++ 2M CFG++", "DPM++ 2S a CFG++"} <= names


def test_scripts_are_listed():
    scripts = _call("/sdapi/v1/scripts")
    for tab in ("txt2img", "img2img"):
        assert {"hidiffusion", "ic-light"} <= set(scripts[tab])


def test_txt2img_with_hidiffusion_and_a_cfgpp_sampler_writes_infotext():
    result = _call("/sdapi/v1/txt2img", {
        "prompt": "a lighthouse", "steps": 4, "width": 512, "height": 512, "seed": 1,
        "sampler_name": "Euler a CFG++", "cfg_scale": 6,
        "alwayson_scripts": {"HiDiffusion": {"args": [{"enabled": True}]}},
    })
    info = json.loads(result["info"])
    text = info["infotexts"][0]
    assert "Sampler: Euler a CFG++" in text and "CFGpp lambda: 0.48" in text and "HiDiffusion: True" in text


def test_unknown_argument_is_refused_with_its_name():
    with pytest.raises(urllib.error.HTTPError) as info:
        _call("/sdapi/v1/txt2img", {"prompt": "x", "steps": 1, "alwayson_scripts": {"HiDiffusion": {"args": [{"enabld": True}]}}})
    assert "enabld" in info.value.read().decode()
