"""Host double of modules.infotext_utils: quoting, parsing the infotext's last line, and the paste step that
turns parsed params into component values (callable keys, bool "False", int components get float(v))."""
from __future__ import annotations

import json
import re

from . import script_callbacks

re_param = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
re_imagesize = re.compile(r"^(\d+)x(\d+)$")


def quote(text):
    if "," not in str(text) and "\n" not in str(text) and ":" not in str(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text):
    if len(text) == 0 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except Exception:
        return text


def parse_generation_parameters(x: str) -> dict:
    res = {}
    *lines, lastline = x.strip().split("\n")
    if len(re_param.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ""
    prompt, negative, done = [], [], False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done, line = True, line[16:].strip()
        (negative if done else prompt).append(line)
    res["Prompt"], res["Negative prompt"] = "\n".join(prompt), "\n".join(negative)
    for k, v in re_param.findall(lastline):
        if v and v[0] == '"' and v[-1] == '"':
            v = unquote(v)
        m = re_imagesize.match(v)
        if m is not None:
            res[f"{k}-1"], res[f"{k}-2"] = m.group(1), m.group(2)
        else:
            res[k] = v
    return res


def paste(infotext: str, paste_fields) -> list:
    """What the paste button sends to each (component, key) pair: the new value, or None for "leave as is"."""
    params = parse_generation_parameters(infotext)
    script_callbacks.infotext_pasted_callback(infotext, params)
    out = []
    for component, key in paste_fields:
        try:
            v = key(params) if callable(key) else params.get(key, None)
        except Exception:
            v = None
        if v is None:
            out.append(None)
            continue
        valtype = type(component.value)
        try:
            if valtype == bool and v == "False":
                out.append(False)
            elif valtype == int:
                out.append(float(v))
            else:
                out.append(valtype(v))
        except Exception:
            out.append(None)
    return out
