"""HiDiffusion and checkpoint switches during a generation (issue 8 item 6), through the host double's v1.10.1
refiner (`apply_refiner` reloads weights from the CFG denoiser mid-sampling) and hires checkpoint.

- Same config: the weights load into the same model object, the patches stay and keep running on the refiner.
- Another config, a layout HiDiffusion can patch: the patches move to the new UNet, the old one is restored exactly.
- A UNet HiDiffusion cannot patch (here: the user forced "SD 1.5" and the refiner is SDXL): the remaining steps run
  without HiDiffusion, and the console, the comment under the image and the infotext say so.
Afterwards no UNet is left patched."""
import pytest

from modules import devices, script_callbacks, scripts, sd_models, shared

import lib_hidiffusion as H
from support.generation import attach_text_encoder, load_model, reset_host, txt2img
from support.scripts_loader import loaded_hidiffusion
from support.tiny_models import make_ldm



module = pytest.fixture(scope="module")(loaded_hidiffusion)


@pytest.fixture(autouse=True)
def _host(module):
    reset_host()
    load_model("sd15")
    yield
    assert not scripts.reported_errors and not script_callbacks.reported_errors
    sd_models.forget_checkpoints()
    devices.fp8 = False
    reset_host()


def _checkpoints(refiner_family):
    base = sd_models.register_checkpoint("base", attach_text_encoder(make_ldm("sd15", seed=0)))
    sd_models.register_checkpoint("refiner", attach_text_encoder(make_ldm(refiner_family, seed=1)))
    sd_models.reload_model_weights(info=base)
    return shared.sd_model.model.diffusion_model


def _generate(module, **changes):
    spec = module.SPEC
    args = spec.positional(spec.replace(spec.defaults(), enabled=True, **changes))
    seen, holder = [], {}

    def hook(p):
        holder["p"] = p

    def on_denoised(params):  # after the UNet call of this step: what the UNet that ran looks like
        unet = shared.sd_model.model.diffusion_model
        seen.append((unet, H.is_patched(unet), module.CONTROLLER.state.armed))

    script_callbacks.on_cfg_denoised(on_denoised)
    try:
        result = txt2img([module.HiDiffusionScript()], args, arg_counts=[len(args)], sampler_name="Euler", steps=6,
                         refiner_checkpoint="refiner", refiner_switch_at=0.5, p_hook=hook)
    finally:
        script_callbacks.remove_callbacks_for_function(on_denoised)
    return result, holder["p"], seen


@pytest.mark.parametrize("refiner_family, moves", [("sd15", False), ("sd21", True)])
def test_refiner_keeps_hidiffusion_running(module, refiner_family, moves):
    base_unet = _checkpoints(refiner_family)
    result, p, seen = _generate(module)
    unets = [u for u, _, _ in seen]
    assert (unets[0] is not unets[-1]) == moves, "a new model object only when the config differs"
    assert all(patched and armed for _, patched, armed in seen), "every call, also after the switch, is patched"
    assert result.extra_generation_params.get("HiDiffusion refiner") == ("applied" if moves else None)
    assert not H.is_patched(base_unet) and not H.is_patched(unets[-1]), "every UNet restored"
    assert not p.comments


def test_refiner_hidiffusion_cannot_patch_is_said_everywhere(module, caplog):
    base_unet = _checkpoints("sdxl")
    result, p, seen = _generate(module, model="SD 1.5")
    switched = [(patched, armed) for u, patched, armed in seen if u is not base_unet]
    assert switched and not any(patched for patched, _ in switched), "the SDXL refiner UNet runs unpatched"
    assert result.extra_generation_params["HiDiffusion refiner"] == "not applied"
    assert "HiDiffusion refiner: not applied" in result.infotexts[0]
    assert any("remaining steps ran without HiDiffusion" in c for c in p.comments)
    assert not H.is_patched(base_unet) and not H.is_patched(shared.sd_model.model.diffusion_model)


def test_hires_checkpoint_hidiffusion_cannot_patch_keeps_the_first_pass(module):
    """v1.10.1 loads the hires checkpoint between the passes: the first pass ran with HiDiffusion; a hires UNet it
    cannot patch runs without it (said in the comment and infotext), the generation is not lost."""
    base_unet = _checkpoints("sdxl")
    spec = module.SPEC
    args = spec.positional(spec.replace(spec.defaults(), enabled=True, model="SD 1.5"))
    seen, holder = [], {}

    def on_denoised(params):
        unet = shared.sd_model.model.diffusion_model
        seen.append((unet is base_unet, H.is_patched(unet)))

    script_callbacks.on_cfg_denoised(on_denoised)
    try:
        result = txt2img([module.HiDiffusionScript()], args, arg_counts=[len(args)], sampler_name="Euler", steps=3,
                         enable_hr=True, hr_scale=1.5, hr_checkpoint_name="refiner", denoising_strength=0.5,
                         p_hook=lambda p: holder.setdefault("p", p))
    finally:
        script_callbacks.remove_callbacks_for_function(on_denoised)
    assert [patched for first, patched in seen if first] == [True] * 3, "the first pass ran with HiDiffusion"
    second = [patched for first, patched in seen if not first]
    assert second and not any(second)
    assert result.extra_generation_params["HiDiffusion hires pass"] == "not applied"
    assert any("hires pass runs without HiDiffusion" in c for c in holder["p"].comments)
    assert not H.is_patched(base_unet)
