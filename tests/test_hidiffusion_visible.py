"""What ran is visible (issue 8 item 12): the resolved preset is in the infotext (also with timing "Auto") in a form
that pastes back without changing "Auto", and warnings reach the user under the image (`p.comment`), not only the
console."""
import pytest

from modules import infotext_utils, scripts, shared

from support.generation import load_model, reset_host, txt2img
from support.scripts_loader import loaded_hidiffusion



module = pytest.fixture(scope="module")(loaded_hidiffusion)


@pytest.fixture(autouse=True)
def _host():
    reset_host()
    yield
    assert not scripts.reported_errors, scripts.reported_errors
    reset_host()


def _generate(module, family="sd15", **fields):
    load_model(family)
    spec = module.SPEC
    args = spec.positional(spec.replace(spec.defaults(), enabled=True))
    holder = {}
    result = txt2img([module.HiDiffusionScript()], args, arg_counts=[len(args)], sampler_name="Euler", steps=3,
                     p_hook=lambda p: holder.setdefault("p", p), **fields)
    return result, holder["p"]


@pytest.mark.parametrize("family, expected", [
    ("sd15", "HiDiffusion preset: SD 1.5; RAU-Net T1 0.4; T2 0; MSW-MSA in 1/2 out 9/10/11"),
    ("sdxl", "HiDiffusion preset: SDXL 1.0; RAU-Net T1 0.4; T2 0; aggressive; MSW-MSA in 4/5 out 3/4/5"),
])
def test_auto_preset_is_written_and_pastes_back_as_auto(module, family, expected):
    result, _ = _generate(module, family)
    text = result.infotexts[0]
    assert expected in text
    params = infotext_utils.parse_generation_parameters(text)
    assert params["HiDiffusion timing"] == "Auto" and "HiDiffusion T1" not in params
    restored = module.SPEC.from_infotext(params)
    assert restored.enabled and restored.timing == "Auto"
    pasted_keys = [key for _, key in module.SPEC.paste_fields([None] * len(module.SPEC.fields))]
    assert "HiDiffusion preset" not in pasted_keys


def test_console_warnings_also_reach_the_comment_under_the_image(module):
    # a latent side of 9 (72 px): the top blocks' feature map is odd, MSW-MSA pads one row/column
    _, p = _generate(module, width=72, height=64)
    assert any("odd" in c and "HiDiffusion" in c for c in p.comments), p.comments
    _, p = _generate(module)
    assert not p.comments, "an aligned size warns nothing"
