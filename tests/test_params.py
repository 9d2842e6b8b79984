"""The parameter-spec glue: UI defaults -> API positional -> API dict -> infotext -> paste -> same values,
clear errors for bad API input, and X/Y/Z axes registered on the plot module."""
import dataclasses

import gradio as gr
import pytest

from modules import infotext_utils, processing, shared

import xyz_grid_double
from suite_glue.params import ParamError, ParamSpec, param
from suite_glue.ui import build_controls
from suite_glue.xyz import register_axes
from support.generation import load_model


@dataclasses.dataclass(frozen=True)
class SampleArgs:
    enabled: bool = param(False, "Enable")
    mode: str = param("auto", "Mode", choices=("auto", "fast", "careful"), infotext="mode", xyz=True)
    strength: float = param(0.5, "Strength", minimum=0.0, maximum=1.0, step=0.05, infotext="strength", xyz=True)
    steps: int = param(4, "Steps", minimum=1, maximum=50, infotext="steps", xyz=True)
    keep: bool = param(True, "Keep in hires", infotext="keep")
    note: str = param("", "Note, free text", infotext="note")


SPEC = ParamSpec(SampleArgs, title="Sample", infotext_prefix="Sample")


def _controls():
    with gr.Blocks():
        return build_controls(SPEC, lambda name: f"sample_{name}")


def test_round_trip_ui_api_infotext_paste():
    controls = _controls()
    assert len(controls) == len(SPEC.fields)
    ui_values = [c.value for c in controls]
    assert SPEC.parse(ui_values) == SPEC.defaults()

    chosen = SampleArgs(enabled=True, mode="careful", strength=0.35, steps=12, keep=False, note="a, b: c")
    positional = SPEC.positional(chosen)
    from_positional = SPEC.parse(positional)
    from_dict = SPEC.parse([SPEC.as_dict(chosen)])
    assert from_positional == chosen == from_dict

    load_model("sd15")
    p = processing.StableDiffusionProcessingTxt2Img(prompt="x", negative_prompt="", seed=3, sampler_name="Euler")
    p.setup_prompts()
    p.all_seeds = [3]
    p.extra_generation_params.update(SPEC.infotext(chosen))
    text = processing.create_infotext(p, 0)
    assert "Sample: True" in text and "Sample strength: 0.35" in text

    pasted = infotext_utils.paste(text, SPEC.paste_fields(controls))
    restored = [old if new is None else new for old, new in zip(ui_values, pasted)]
    assert SPEC.parse(restored) == chosen
    assert SPEC.from_infotext(infotext_utils.parse_generation_parameters(text)) == chosen


def test_paste_without_the_feature_turns_it_off_and_leaves_other_controls():
    controls = _controls()
    pasted = infotext_utils.paste("a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512",
                                  SPEC.paste_fields(controls))
    assert pasted[0] is False and all(v is None for v in pasted[1:])


def test_disabled_writes_no_infotext():
    assert SPEC.infotext(SPEC.defaults()) == {}


@pytest.mark.parametrize("args, message", [
    ([{"enabled": True, "strenght": 0.3}], "unknown argument 'strenght'"),
    ([{"enable": True}], "unknown argument 'enable'"),
    ([{"enabled": "yes"}], "argument 'enabled' (Enable) must be true or false"),
    ([{"enabled": True, "strength": "strong"}], "argument 'strength' (Strength) must be a number"),
    ([{"enabled": True, "strength": 1.5}], "argument 'strength' (Strength) must be between 0.0 and 1.0"),
    ([{"enabled": True, "steps": 2.5}], "argument 'steps' (Steps) must be a whole number"),
    ([{"enabled": True, "mode": "turbo"}], "argument 'mode' (Mode) must be one of ['auto', 'fast', 'careful']"),
    ([True, "auto", 0.5, 4, True, "", "extra"], "expected at most 6 arguments"),
])
def test_bad_api_input_names_the_field(args, message):
    with pytest.raises(ParamError) as info:
        SPEC.parse(args)
    assert message in str(info.value) and str(info.value).startswith("Sample:")


@pytest.mark.parametrize("args", [
    [False, None, None, None, None, None],  # an API default list with empty dropdowns / untouched controls
    [False, "stale choice from a pasted infotext", 7.0, 0, "x", ""],
    [None],
    [{"enabled": False, "mode": None, "strength": "strong", "steps": -3}],
    [{}],
    [],
])
def test_disabled_accepts_anything_its_ui_can_produce(args):
    """Disabled means inert: no other value is checked, the defaults come back (and write no infotext)."""
    assert SPEC.parse(args) == SPEC.defaults()


def test_default_from_gives_the_ui_value_and_the_missing_argument():
    choices = ["b_other.bin", "a_preferred.bin"]

    @dataclasses.dataclass(frozen=True)
    class Files:
        enabled: bool = param(False, "Enable")
        file: str = param("", "File", choices=lambda: choices, default_from=lambda: choices[-1] if choices else None)

    spec = ParamSpec(Files, title="Files")
    with gr.Blocks():
        controls = build_controls(spec, lambda name: f"files_{name}")
    assert controls[1].value == "a_preferred.bin"
    for args in ([True], [{"enabled": True}], [True, None], [True, ""]):
        assert spec.parse(args).file == "a_preferred.bin", args
    assert spec.parse([True, "b_other.bin"]).file == "b_other.bin"
    choices.clear()
    assert spec.parse([True, None]).file == "", "no files: an empty name, which the feature explains"


def test_dict_form_fills_defaults_and_accepts_json_numbers():
    values = SPEC.parse([{"enabled": True, "steps": 7.0}])
    assert values == SampleArgs(enabled=True, steps=7) and isinstance(values.steps, int)


def test_xyz_axes_apply_overrides_and_enable():
    xyz = xyz_grid_double.install()
    added = register_axes(SPEC)
    assert [a.label for a in added] == ["Sample Mode", "Sample Strength", "Sample Steps"]
    assert register_axes(SPEC) == [], "registering twice adds nothing"

    load_model("sd15")
    p = processing.StableDiffusionProcessingTxt2Img(prompt="x")
    xyz_grid_double.run_axis(xyz, p, "Sample Strength", ["0.25"])
    xyz_grid_double.run_axis(xyz, p, "Sample Mode", ["fast"])
    values = SPEC.parse(SPEC.positional(SPEC.defaults()), p)
    assert values == SampleArgs(enabled=True, mode="fast", strength=0.25)
    with pytest.raises(ParamError, match="must be one of"):  # the plot does not check choices; our apply does
        xyz_grid_double.run_axis(xyz, p, "Sample Mode", ["nope"])
    with pytest.raises(ParamError, match="between"):
        xyz_grid_double.run_axis(xyz, p, "Sample Strength", ["7"])
    shared.opts.reset()


def test_infotext_keys_that_would_not_parse_back_are_refused():
    @dataclasses.dataclass(frozen=True)
    class Bad:
        enabled: bool = param(False, "Enable")
        scale: float = param(1.0, "Scale", infotext="scale++")

    with pytest.raises(ValueError, match="would not parse back"):
        ParamSpec(Bad, title="Bad")


def test_the_switch_must_come_first():
    """A dict in first position is the API dict form; that is unambiguous only if the first field is the switch."""
    @dataclasses.dataclass(frozen=True)
    class SwitchLast:
        strength: float = param(0.5, "Strength")
        enabled: bool = param(False, "Enable")

    with pytest.raises(TypeError, match="first field must be 'enabled'"):
        ParamSpec(SwitchLast, title="Late")
