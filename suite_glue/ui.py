"""Gradio controls for a `ParamSpec`, in field order (the order is the API's positional order).

The `enabled` field becomes the accordion's own switch (`InputAccordion`, as the WebUI's built-in scripts do);
the other fields become checkboxes, sliders, numbers, dropdowns/radios, textboxes or images."""
from __future__ import annotations

from .params import IMAGE_KINDS, Field, ParamSpec


def _control(gr, f: Field, elem_id: str):
    common = dict(label=f.label, elem_id=elem_id, info=f.info) if f.info else dict(label=f.label, elem_id=elem_id)
    if f.kind in IMAGE_KINDS:  # image16: no mode conversion, so a 16-bit upload stays 16-bit
        return gr.Image(label=f.label, elem_id=elem_id, type="pil", image_mode="RGBA" if f.kind == "image" else None,
                        source="upload")
    if f.type is bool:
        return gr.Checkbox(value=f.default, **common)
    if f.type in (int, float):
        if f.ui == "number" or f.minimum is None or f.maximum is None:
            return gr.Number(value=f.default, precision=0 if f.type is int else None, **common)
        step = f.step if f.step is not None else (1 if f.type is int else 0.01)
        return gr.Slider(minimum=f.minimum, maximum=f.maximum, step=step, value=f.default, **common)
    if f.choices is not None:
        choices, value = f.choice_list(), f.initial_value()
        if callable(f.choices) and value not in choices:  # dynamic choices: start on the first one found
            value = choices[0] if choices else None
        if f.ui == "radio":
            return gr.Radio(choices=choices, value=value, **common)
        return gr.Dropdown(choices=choices, value=value, **common)
    return gr.Textbox(value=f.default, **common)


def build_controls(spec: ParamSpec, elem_id) -> list:
    """Create the accordion and its controls inside the current gradio Blocks; `elem_id(name)` makes ids."""
    import gradio as gr
    try:
        from modules.ui_components import InputAccordion
    except ImportError:  # older WebUI: a plain accordion with a checkbox inside
        InputAccordion = None

    enabled_field = spec.by_name["enabled"]
    controls = {}
    if InputAccordion is not None:
        accordion = InputAccordion(enabled_field.default, label=spec.title, elem_id=elem_id("enabled"))
        controls["enabled"] = accordion
    else:
        accordion = gr.Accordion(spec.title, open=False)
    with accordion:
        if InputAccordion is None:
            controls["enabled"] = gr.Checkbox(value=enabled_field.default, label="Enable", elem_id=elem_id("enabled"))
        for f in spec.fields:
            if f.name != "enabled":
                controls[f.name] = _control(gr, f, elem_id(f.name))
    return [controls[f.name] for f in spec.fields]
