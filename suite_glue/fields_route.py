"""`GET /hdsuite/v1/fields`: every feature's API field names, types, defaults, ranges and choices (the WebUI's own
`/sdapi/v1/script-info` lists control labels, not the names the dict form takes), plus per-feature extras such as
the IC-Light files found. Scripts `publish` their spec; `add_route` is an `on_app_started(demo, app)` callback and
adds the route once, however many scripts register it."""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

from .params import IMAGE_KINDS, ParamSpec

PATH = "/hdsuite/v1/fields"
_PUBLISHED: Dict[str, Tuple[ParamSpec, Optional[Callable[[], dict]]]] = {}


def publish(spec: ParamSpec, extra: Optional[Callable[[], dict]] = None) -> None:
    """List `spec` (and what `extra()` returns at request time) under its title."""
    _PUBLISHED[spec.title] = (spec, extra)


def _jsonable(value):
    return value if value is None or isinstance(value, (bool, int, float, str)) else None


def describe(spec: ParamSpec) -> dict:
    """{"fields": [...]} in API positional order; `default` is what a missing argument takes now."""
    fields = []
    for f in spec.fields:
        entry = {"name": f.name, "label": f.label, "type": "image" if f.kind in IMAGE_KINDS else f.type.__name__,
                 "default": _jsonable(f.initial_value())}
        for key in ("minimum", "maximum"):
            if getattr(f, key) is not None:
                entry[key] = getattr(f, key)
        if f.choices is not None:
            entry["choices"] = f.choice_list()
        if f.infotext is not None or f.name == "enabled":
            entry["infotext"] = spec.infotext_key(f)
        fields.append(entry)
    return {"fields": fields}


def fields_response() -> dict:
    out = {}
    for title, (spec, extra) in _PUBLISHED.items():
        out[title] = describe(spec)
        if extra is not None:
            out[title].update(extra())
    return out


def add_route(demo, app) -> None:
    if any(getattr(route, "path", None) == PATH for route in getattr(app, "routes", [])):
        return
    app.add_api_route(PATH, fields_response, methods=["GET"])
