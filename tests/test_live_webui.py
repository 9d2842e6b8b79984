"""Live checks against a running WebUI v1.10.1 with this extension installed, through its public API only, as a user
would use it (SD 1.5- or SDXL-family checkpoint loaded, with or without IC-Light files). Skipped unless WEBUI_URL is
set: `WEBUI_URL=http://127.0.0.1:7860 bash tests/run.sh tests/test_live_webui.py` (start the WebUI with --api).

Each feature runs through the dict form of `alwayson_scripts`; after each, a plain generation with the same seed must
be byte-identical to the one made before any feature ran (restore is exact). IC-Light either runs (SD 1.5 checkpoint
and files present) or is refused with a message that says what to do (no files: which files and where; SDXL: an SD
1.5 checkpoint)."""
import base64
import io
import json
import os
import urllib.error
import urllib.request

import pytest

URL = os.environ.get("WEBUI_URL", "").rstrip("/")
pytestmark = pytest.mark.skipif(not URL, reason="WEBUI_URL not set: no running WebUI to test against")

PLAIN = {"prompt": "a lighthouse on a cliff", "negative_prompt": "blurry", "steps": 3, "width": 256, "height": 256,
         "seed": 11, "sampler_name": "Euler", "cfg_scale": 6}


def _call(path, payload=None, timeout=900):
    """(HTTP status, parsed JSON or text)."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(URL + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def _ok(path, payload=None):
    status, body = _call(path, payload)
    assert status == 200, body
    return body


def _refused(payload, path="/sdapi/v1/txt2img"):
    status, body = _call(path, payload)
    assert status != 200, "expected the request to be refused"
    return body if isinstance(body, str) else json.dumps(body)


def _infotext(result):
    return json.loads(result["info"])["infotexts"][0]


def _png(seed=0, size=64, alpha=True):
    """A small RGBA disc (or RGB gradient) as base64 PNG, made without numpy so the live test needs only PIL."""
    from PIL import Image, ImageDraw
    image = Image.new("RGBA" if alpha else "RGB", (size, size), (0, 0, 0, 0) if alpha else (90, 120, 200))
    ImageDraw.Draw(image).ellipse((8 + seed, 8, size - 8, size - 8), fill=(200, 120 + seed, 60, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def plain_txt2img():
    """A plain generation before any feature ran (the suite installed, every feature off)."""
    return _ok("/sdapi/v1/txt2img", PLAIN)["images"][0]


def _assert_restored(plain_txt2img):
    again = _ok("/sdapi/v1/txt2img", PLAIN)
    assert again["images"][0] == plain_txt2img, "a plain generation after the feature differs: restore is not exact"
    text = _infotext(again)
    assert "HiDiffusion" not in text and "IC-Light" not in text


def test_samplers_scripts_and_fields_are_listed():
    names = {s["name"] for s in _ok("/sdapi/v1/samplers")}
    assert {"Euler CFG++", "Euler a CFG++", "DPM++ 2M CFG++", "DPM++ 2S a CFG++", "DPM++ SDE CFG++",
            "DPM++ 2M SDE CFG++", "DPM++ 3M SDE CFG++", "Heun CFG++", "DPM2 CFG++", "RES Multistep CFG++",
            "RES Multistep Ancestral CFG++", "Gradient Estimation CFG++", "RES Multistep"} <= names
    scripts = _ok("/sdapi/v1/scripts")
    for tab in ("txt2img", "img2img"):
        assert {"hidiffusion", "ic-light"} <= set(scripts[tab])
    fields = _ok("/hdsuite/v1/fields")
    assert [f["name"] for f in fields["HiDiffusion"]["fields"]][0] == "enabled"
    assert "files" in fields["IC-Light"] and "folder" in fields["IC-Light"]


def test_plain_txt2img_and_img2img_work_with_the_suite_installed(plain_txt2img):
    assert "HiDiffusion" not in _infotext(_ok("/sdapi/v1/txt2img", PLAIN))
    result = _ok("/sdapi/v1/img2img", dict(PLAIN, init_images=[_png(alpha=False)], denoising_strength=0.5))
    assert result["images"] and "IC-Light" not in _infotext(result)
    # a disabled feature given values its UI can produce (an empty dropdown is None) stays inert
    off = {"IC-Light": {"args": [False, None]}, "HiDiffusion": {"args": [{"enabled": False}]}}
    assert _ok("/sdapi/v1/txt2img", dict(PLAIN, alwayson_scripts=off))["images"][0] == plain_txt2img


def test_hidiffusion_dict_args_then_restored(plain_txt2img):
    result = _ok("/sdapi/v1/txt2img", dict(PLAIN, width=512, height=512,
                                            alwayson_scripts={"HiDiffusion": {"args": [{"enabled": True}]}}))
    text = _infotext(result)
    assert "HiDiffusion: True" in text and "HiDiffusion preset:" in text
    _assert_restored(plain_txt2img)


def test_cfgpp_sampler_then_restored(plain_txt2img):
    result = _ok("/sdapi/v1/txt2img", dict(PLAIN, sampler_name="Euler a CFG++", cfg_scale=6))
    text = _infotext(result)
    assert "Sampler: Euler a CFG++" in text and "CFGpp lambda: 0.48" in text
    _assert_restored(plain_txt2img)


def test_iclight_runs_or_says_what_to_do_then_restored(plain_txt2img):
    files = _ok("/hdsuite/v1/fields")["IC-Light"]["files"]
    args = {"enabled": True, "foreground": _png(), "remover": "none"}
    status, body = _call("/sdapi/v1/txt2img", dict(PLAIN, width=256, height=256,
                                                     alwayson_scripts={"IC-Light": {"args": [args]}}))
    if status == 200:
        assert files and "IC-Light: True" in _infotext(body)
    else:
        message = body if isinstance(body, str) else json.dumps(body)
        assert "IC-Light" in message
        if not files:
            assert "iclight_sd15_fc.safetensors" in message, message
        else:
            assert "SD 1.5" in message, message  # an SDXL-family checkpoint is loaded
    _assert_restored(plain_txt2img)


def test_bad_arguments_are_refused_naming_the_field(plain_txt2img):
    assert "enabld" in _refused(dict(PLAIN, alwayson_scripts={"HiDiffusion": {"args": [{"enabld": True}]}}))
    message = _refused(dict(PLAIN, alwayson_scripts={"HiDiffusion": {"args": [{"enabled": True, "t1": "soon"}]}}))
    assert "'t1'" in message
    _assert_restored(plain_txt2img)


@pytest.mark.parametrize("name", ["../../config.json", "/etc/hostname", "..\\..\\webui-user.bat"])
def test_iclight_model_outside_its_folder_is_refused(plain_txt2img, name):
    args = {"enabled": True, "model": name, "foreground": _png(), "remover": "none"}
    message = _refused(dict(PLAIN, alwayson_scripts={"IC-Light": {"args": [args]}}))
    assert "'model'" in message and "config.json" not in message.replace(name, "")
    _assert_restored(plain_txt2img)
