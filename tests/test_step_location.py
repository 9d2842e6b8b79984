"""HiDiffusion's step gating locates every model call of every sampler of the WebUI's list on its true step
(issue 8 item 4), through the host double's v1.10.1 sampler table and its CFG++ additions.

Truth: the sampler's own loop index at each UNet call (the loops of k-diffusion, LCM, Restart, the timestep family
and the CFG++ samplers are wrapped by `StepTruth`), never the locator. Located: the step HiDiffusion's controller
set for that call. Samplers without a fixed schedule (DPM fast/adaptive; Restart from 20 steps; UniPC on its own
time grid) must be "unknown": RAU-Net off for the pass and a warning under the image."""
import pytest

from modules import script_callbacks, scripts, sd_samplers, sd_samplers_kdiffusion, sd_samplers_lcm, shared

import lib_cfgpp
import lib_hidiffusion as H
from support.generation import img2img, reset_host, txt2img
from support.hidiffusion_webui_probe import StepTruth, load_fast_sd15
from support.scripts_loader import load_script, unload_callbacks

# the suite's samplers: the bases the WebUI lacks (RES multistep, gradient estimation) and every CFG++ sampler
CFGPP = [d.label for d in lib_cfgpp.BASE_SAMPLERS] + [d.label for d in lib_cfgpp.SAMPLERS]
UNKNOWN = {"DPM fast", "DPM adaptive", "UniPC"}
KDIFFUSION = [label for label, *_ in sd_samplers_kdiffusion.samplers_k_diffusion] + \
             [label for label, *_ in sd_samplers_lcm.samplers_lcm]
LOCATED = [name for name in KDIFFUSION if name not in UNKNOWN] + CFGPP + ["DDIM", "DDIM CFG++", "PLMS"]


@pytest.fixture(scope="module")
def scripts_loaded():
    hidiffusion = load_script("hidiffusion.py")
    cfgpp = load_script("cfgpp_samplers.py")
    yield hidiffusion, cfgpp
    hidiffusion.CONTROLLER.release()
    unload_callbacks("hidiffusion.py")
    unload_callbacks("cfgpp_samplers.py")


@pytest.fixture
def probe(scripts_loaded, monkeypatch):
    hidiffusion, cfgpp = scripts_loaded
    reset_host()
    load_fast_sd15()
    state = hidiffusion.CONTROLLER.state
    truth = StepTruth(monkeypatch, shared.sd_model.model.diffusion_model, loops=[(cfgpp, "trange")],
                      step_of=lambda: (state.step, state.total_steps, state.phase))
    yield hidiffusion, truth
    truth.close()
    assert not scripts.reported_errors and not script_callbacks.reported_errors
    reset_host()


def _run(hidiffusion, kind, sampler, steps, eta, holder=None, **fields):
    spec = hidiffusion.SPEC
    args = spec.positional(spec.replace(spec.defaults(), enabled=True, timing="Steps", t1=1, t2=1, msw_msa=False))
    run = txt2img if kind == "txt2img" else img2img
    return run([hidiffusion.HiDiffusionScript()], args, arg_counts=[len(spec.fields)], sampler_name=sampler,
               steps=steps, eta=eta, p_hook=(lambda p: holder.setdefault("p", p)) if holder is not None else None,
               **fields)


def test_the_lists_cover_the_webuis_table(scripts_loaded):
    names = {s.name for s in sd_samplers.all_samplers}
    assert set(LOCATED) | UNKNOWN == names
    assert all(sd_samplers.all_samplers_map[n].options.get("second_order") for n in ("DPM2 a", "DPM++ 2S a CFG++"))


@pytest.mark.parametrize("sampler", LOCATED)
def test_every_call_on_its_true_step(probe, sampler):
    """4, 5 and 10 steps at eta 0 and 1 (txt2img), and an img2img tail: (true step, located step) for every call;
    the locator's step count is the number of steps the loop ran; T1 = T2 = 1 step: RAU-Net only in step 0."""
    hidiffusion, truth = probe
    cases = [("txt2img", steps, eta) for steps in (4, 5, 10) for eta in (0.0, 1.0)] + [("img2img", 10, 1.0)]
    for kind, steps, eta in cases:
        truth.reset()
        _run(hidiffusion, kind, sampler, steps, eta, denoising_strength=0.6)
        (loop_length,) = truth.loop_lengths
        located = [step for step, _, _ in truth.located]
        true = [index for index, _ in truth.calls]
        assert located == true, (sampler, kind, steps, eta, list(zip(true, located)))
        assert {total for _, total, _ in truth.located} == {loop_length}, (sampler, kind, steps, eta)
        assert [phase.rad for _, _, phase in truth.located] == [i == 0 for i in true], (sampler, kind, steps, eta)


@pytest.mark.parametrize("sampler,steps", [("DPM fast", 5), ("DPM adaptive", 5), ("UniPC", 5), ("Restart", 20)])
def test_samplers_without_a_fixed_schedule_are_unknown(probe, sampler, steps):
    """No fixed schedule to locate on: every call gets step "unknown" (-1), RAU-Net stays off, and the user sees
    why under the image (p.comment)."""
    hidiffusion, truth = probe
    holder = {}
    _run(hidiffusion, "txt2img", sampler, steps, 1.0, holder)
    assert truth.located and all(step == -1 and not phase.any for step, _, phase in truth.located)
    comments = " ".join(holder["p"].comments)
    assert "RAU-Net is off" in comments and sampler in comments
    # a sampler with a fixed schedule gives no such comment
    holder = {}
    _run(hidiffusion, "txt2img", "Euler", 4, 1.0, holder)
    assert "RAU-Net is off" not in " ".join(holder["p"].comments)
