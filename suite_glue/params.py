"""One parameter spec per feature: a frozen dataclass whose fields, declared with `param(...)`, give the
defaults, ranges, labels, UI controls, the API argument order, the accepted dict form, infotext keys and
X/Y/Z axes.

API forms accepted by `ParamSpec.parse(script_args)`:
- positional: the values in field order (what the UI sends; trailing values may be missing -> defaults);
- dict: `{"args": [{"enabled": true, "t1": 0.4}]}` in `alwayson_scripts`, i.e. a dict as the first arg; keys are
  the field names; missing keys take defaults; an unknown key or a wrong type raises `ParamError` naming it.

Disabled means inert: the WebUI passes every always-on script its UI's values on every generation (the API re-runs
`ui()` and reads each component's `.value`: an empty dropdown gives None, an untouched image None), so when
`enabled` is false `parse` returns the defaults without checking any other value. Only an unknown key of the dict
form is still refused (no UI produces a dict; a misspelt "enable" must not silently turn a feature off).
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable, Optional, Sequence

from .images import decode_images

XYZ_OVERRIDES_ATTR = "hdsuite_xyz_overrides"
IMAGE_KINDS = ("image", "image16")
INFOTEXT_KEY = re.compile(r"\w[\w \-/]+")  # what the WebUI's infotext parser reads back as a key


class ParamError(ValueError):
    """A script argument the feature cannot accept; the message names the feature and the field."""


def param(default, label: str, *, minimum=None, maximum=None, step=None, choices: Optional[Sequence] = None,
          infotext: Optional[str] = None, xyz: bool = False, info: Optional[str] = None, kind: Optional[str] = None,
          ui: Optional[str] = None, default_from: Optional[Callable[[], Any]] = None):
    """Declare one argument. `infotext`: the key suffix written to the infotext (None: not written).
    `kind`: 'image' for image inputs (PIL / numpy / base64 string; API images as 8 bits), 'image16' for images
    whose bit depth matters (16-bit greyscale and float kept, e.g. depth maps).
    `ui`: 'radio' | 'number' | 'dropdown' | 'slider' to choose the control; by default bools are checkboxes, numbers
    with a range sliders, choices dropdowns.
    `choices` may be a callable returning the current list (e.g. files in a folder): it is called when the UI or an
    X/Y/Z axis is built, and values are not checked against it (the feature validates them when it runs).
    `default_from`: a callable giving the value used when none is given (missing, None or ""), e.g. the preferred
    file of a folder; the UI starts on it too, so the UI and the API (positional and dict) agree."""
    if choices is not None and not callable(choices):
        choices = tuple(choices)
    metadata = dict(label=label, minimum=minimum, maximum=maximum, step=step, choices=choices,
                    infotext=infotext, xyz=xyz, info=info, kind=kind, ui=ui, default_from=default_from)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    type: type
    default: Any
    label: str
    minimum: Any = None
    maximum: Any = None
    step: Any = None
    choices: Optional[tuple] = None
    infotext: Optional[str] = None
    xyz: bool = False
    info: Optional[str] = None
    kind: Optional[str] = None
    ui: Optional[str] = None
    default_from: Optional[Callable[[], Any]] = None

    def initial_value(self):
        """The value the UI control starts on and a missing argument takes."""
        if self.default_from is not None:
            value = self.default_from()
            return self.default if value is None else value
        return self.default

    def choice_list(self) -> Optional[list]:
        """The current choices (a callable's result for dynamic choices), or None."""
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)


_TYPES = {"bool": bool, "int": int, "float": float, "str": str}


def _field_type(annotation) -> type:
    if isinstance(annotation, str):
        return _TYPES.get(annotation.split("|")[0].strip().replace("Optional[", "").rstrip("]"), object)
    return annotation if annotation in (bool, int, float, str) else object


class ParamSpec:
    """The parameter table of one feature. `title` names the feature in errors and UI; `infotext_prefix` starts
    every infotext key ("HiDiffusion" -> "HiDiffusion: True", "HiDiffusion T1: 0.4")."""

    def __init__(self, values_class, title: str, infotext_prefix: Optional[str] = None):
        if dataclasses.fields(values_class)[0].name != "enabled":
            # first, so that a dict in first position can only be the API dict form, never a UI value
            raise TypeError("a parameter spec's first field must be 'enabled'")
        self.values_class = values_class
        self.title = title
        self.infotext_prefix = infotext_prefix or title
        self.fields = [Field(name=f.name, type=_field_type(f.type), default=f.default, **f.metadata)
                       for f in dataclasses.fields(values_class)]
        self.by_name = {f.name: f for f in self.fields}
        for f in self.fields:
            key = self.infotext_key(f)
            if (f.name == "enabled" or f.infotext is not None) and not INFOTEXT_KEY.fullmatch(key):
                raise ValueError(f"infotext key {key!r} would not parse back: use letters, digits, spaces, - and /")

    # --- values -------------------------------------------------------------------------------------------
    def defaults(self):
        return self.values_class()

    def positional(self, values) -> list:
        return [getattr(values, f.name) for f in self.fields]

    def as_dict(self, values) -> dict:
        return {f.name: getattr(values, f.name) for f in self.fields}

    def replace(self, values, **changes):
        return dataclasses.replace(values, **{k: self.check(k, v) for k, v in changes.items()})

    def check(self, name: str, value):
        """`value` converted to field `name`'s type, or `ParamError` naming the field and what it accepts."""
        if name not in self.by_name:
            raise ParamError(f"{self.title}: unknown argument '{name}'; accepted: {', '.join(self.by_name)}")
        f = self.by_name[name]
        where = f"{self.title}: argument '{name}' ({f.label})"
        if f.kind in IMAGE_KINDS:
            try:
                return decode_images(value, where, keep_bit_depth=f.kind == "image16")
            except ValueError as exc:
                raise ParamError(str(exc)) from None
        if f.type is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value in ("True", "False", "true", "false"):
                return value.lower() == "true"
            raise ParamError(f"{where} must be true or false, got {value!r}")
        if f.type in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                if isinstance(value, str):
                    try:
                        value = float(value)
                    except ValueError:
                        raise ParamError(f"{where} must be a number, got {value!r}") from None
                else:
                    raise ParamError(f"{where} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ParamError(f"{where} must be finite, got {value!r}")
            if f.type is int:
                if float(value) != int(value):
                    raise ParamError(f"{where} must be a whole number, got {value!r}")
                value = int(value)
            else:
                value = float(value)
            if (f.minimum is not None and value < f.minimum) or (f.maximum is not None and value > f.maximum):
                raise ParamError(f"{where} must be between {f.minimum} and {f.maximum}, got {value!r}")
            return value
        if f.type is str:
            if f.default_from is not None and (value is None or value == ""):
                value = f.initial_value()
            elif value is None and callable(f.choices):
                value = ""  # a dropdown with no choices gives None; the feature says what is missing
            if not isinstance(value, str):
                raise ParamError(f"{where} must be a string, got {value!r}")
            if f.choices is not None and not callable(f.choices) and value not in f.choices:
                raise ParamError(f"{where} must be one of {list(f.choices)}, got {value!r}")
            return value
        return value

    def parse(self, script_args: Sequence, p=None):
        """The values given by a script's args slice (positional or the API dict form), with X/Y/Z overrides
        stored on `p` applied last (an axis value also enables the feature)."""
        args = list(script_args)
        if args and isinstance(args[0], dict):
            given = dict(args[0])
        else:
            if len(args) > len(self.fields):
                raise ParamError(f"{self.title}: expected at most {len(self.fields)} arguments "
                                 f"({', '.join(self.by_name)}), got {len(args)}")
            given = {f.name: v for f, v in zip(self.fields, args)}
        unknown = [name for name in given if name not in self.by_name]
        if unknown:
            self.check(unknown[0], None)  # raises: unknown argument
        overrides = getattr(p, XYZ_OVERRIDES_ATTR, {}).get(self.title, {}) if p is not None else {}
        if overrides:
            given.update(overrides)
            given["enabled"] = True
        if given.get("enabled") is None or not self.check("enabled", given["enabled"]):
            return self.defaults()  # disabled: inert, whatever the other values (see the module docstring)
        for f in self.fields:
            if f.name not in given and f.default_from is not None:
                given[f.name] = f.initial_value()
        return self.values_class(**{name: self.check(name, value) for name, value in given.items()})

    # --- infotext -----------------------------------------------------------------------------------------
    def infotext_key(self, f: Field) -> str:
        return self.infotext_prefix if f.name == "enabled" else f"{self.infotext_prefix} {f.infotext}"

    def infotext(self, values) -> dict:
        """Infotext entries for `values` (nothing when disabled)."""
        if not values.enabled:
            return {}
        return {self.infotext_key(f): getattr(values, f.name) for f in self.fields
                if f.name == "enabled" or f.infotext is not None}

    def from_infotext(self, params: dict):
        """The values an infotext (parsed to a dict) restores; fields it lacks take defaults."""
        given = {"enabled": str(params.get(self.infotext_prefix, "False")) == "True"}
        for f in self.fields:
            key = self.infotext_key(f)
            if f.name != "enabled" and f.infotext is not None and key in params:
                given[f.name] = params[key]
        return self.values_class(**{k: self.check(k, v) for k, v in given.items()})

    def paste_fields(self, components: Sequence) -> list:
        """(component, key) pairs for `Script.infotext_fields`; the on/off switch follows the presence of the
        feature's key, so pasting an infotext without it turns the feature off."""
        pairs = []
        for f, component in zip(self.fields, components):
            if f.name == "enabled":
                pairs.append((component, lambda d, key=self.infotext_prefix: str(d.get(key, "False")) == "True"))
            elif f.infotext is not None:
                pairs.append((component, self.infotext_key(f)))
        return pairs

    # --- X/Y/Z ----------------------------------------------------------------------------------------------
    def xyz_fields(self) -> list:
        return [f for f in self.fields if f.xyz]

    def xyz_apply(self, name: str) -> Callable:
        """An X/Y/Z `apply(p, x, xs)` that stores the value as an override on `p` (checked now, used by `parse`)."""
        def apply(p, x, xs):
            store = getattr(p, XYZ_OVERRIDES_ATTR, None)
            if store is None:
                store = {}
                setattr(p, XYZ_OVERRIDES_ATTR, store)
            store.setdefault(self.title, {})[name] = self.check(name, x)
        return apply
