"""X/Y/Z plot axes for a `ParamSpec`: found and extended the way extensions do in WebUI v1.10
(the X/Y/Z script module is the `scripts_data` entry whose class module is "xyz_grid.py")."""
from __future__ import annotations

import logging

from .params import ParamSpec

log = logging.getLogger("hdsuite")


def find_xyz_module():
    from modules import scripts
    for data in scripts.scripts_data:
        if data.script_class.__module__ == "xyz_grid.py":
            return data.module
    return None


def register_axes(spec: ParamSpec) -> list:
    """Add one axis per X/Y/Z field of `spec` (labelled "<title> <label>"); idempotent. Returns the axes added."""
    xyz = find_xyz_module()
    if xyz is None:
        log.info("X/Y/Z plot not loaded: no %s axes", spec.title)
        return []
    added = []
    existing = {opt.label for opt in xyz.axis_options}
    for f in spec.xyz_fields():
        label = f"{spec.title} {f.label}"
        if label in existing:
            continue
        if f.choices is not None:
            axis = xyz.AxisOption(label, str, spec.xyz_apply(f.name), choices=f.choice_list)
        elif f.type is bool:
            axis = xyz.AxisOption(label, str, spec.xyz_apply(f.name), choices=lambda: ["True", "False"])
        else:
            axis = xyz.AxisOption(label, f.type, spec.xyz_apply(f.name))
        xyz.axis_options.append(axis)
        added.append(axis)
    return added
