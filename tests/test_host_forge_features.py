"""The suite on the Forge-family double (tests/host_forge, reForge's contract): every feature either runs correctly
or refuses before sampling with a message naming the host, never a silent no-op; host-native samplers keep their
names and behaviour; infotext only when a feature ran. The A1111 path is covered by the other test modules."""
import pytest
import torch

from modules import sd_samplers, sd_samplers_kdiffusion, shared

import lib_cfgpp
import lib_hidiffusion as H
from host_forge.install import ForgeDouble, glue_host
from host_forge.probe import LayerPhaseProbe
from support.generation import load_model, reset_host, txt2img
from support.hidiffusion_webui_probe import load_fast_sd15
from support.scripts_loader import load_script, unload_callbacks

CFGPP, HIDIFFUSION, ICLIGHT = "cfgpp_samplers.py", "hidiffusion.py", "iclight.py"
SUFFIX = " (suite)"
GEN = dict(seed=3, steps=5, cfg_scale=7.0)


def _isolate_sampler_tables(mp):
    """Registrations in this context go to copies of the sampler tables (restored with `mp`)."""
    mp.setattr(sd_samplers, "all_samplers", list(sd_samplers.all_samplers))
    mp.setattr(sd_samplers, "all_samplers_map", dict(sd_samplers.all_samplers_map))
    mp.setattr(sd_samplers_kdiffusion, "sampler_extra_params", dict(sd_samplers_kdiffusion.sampler_extra_params))


def _restore_sampler_lists():
    sd_samplers.set_samplers()
    sd_samplers.get_sampler_and_scheduler.cache_clear()
    glue_host().forget()


@pytest.fixture(autouse=True)
def _clean_host():
    reset_host()
    glue_host().forget()
    yield
    reset_host()
    glue_host().forget()


@pytest.fixture
def forge(monkeypatch):
    load_model("sd15")
    double = ForgeDouble(monkeypatch)
    yield double
    double.close()


@pytest.fixture
def forge_cfgpp(forge):
    script = load_script(CFGPP)  # registered as it is when the WebUI loads it: on the Forge host
    yield script
    unload_callbacks(CFGPP)


# --- CFG++ ---------------------------------------------------------------------------------------------------
CASES = [("Euler CFG++", "CFG/12.5"), ("DPM++ 2M CFG++", "CFG/12.5"), ("Euler a CFG++", "CFG/12.5"),
         ("DPM++ 2S a CFG++", "CFG/12.5"), ("Euler CFG++", "CFG=lambda")]
BASES = {"Euler CFG++": "Euler", "DPM++ 2M CFG++": "DPM++ 2M", "Euler a CFG++": "Euler a",
         "DPM++ 2S a CFG++": "DPM++ 2S a"}


def _cfg(convention):
    return 0.6 if convention == "CFG=lambda" else 7.0


@pytest.fixture(scope="module")
def a1111_reference():
    """Our CFG++ samplers on the A1111 double (same tiny model, seed and settings) and the infotext they write."""
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        _isolate_sampler_tables(mp)
        reset_host()
        glue_host().forget()
        load_model("sd15")
        script = load_script(CFGPP)
        try:
            for label, convention in CASES:
                shared.opts.cfgpp_guidance_convention = convention
                run = txt2img(sampler_name=label, **{**GEN, "cfg_scale": _cfg(convention)})
                out[label, convention] = run.latents, run.extra_generation_params
        finally:
            unload_callbacks(CFGPP)
            del script
            reset_host()
    _restore_sampler_lists()
    return out


def test_registration_never_replaces_a_host_sampler(forge, forge_cfgpp):
    """reForge names its own CFG++ samplers "Euler CFG++", "DPM++ 2M CFG++", ... (aliases "euler_cfg_pp", ...):
    each keeps its SamplerData, name and aliases; ours that collide get the suffix, aliases the host uses are left
    out, the others keep their labels; every one of ours is registered exactly once and found by its label."""
    host = glue_host().current()
    for label, data in forge.native.items():
        assert sd_samplers.all_samplers_map[label] is data
        assert sd_samplers.get_sampler_and_scheduler(label, None)[0] == label
        assert all(sd_samplers.samplers_map[a.lower()] == label for a in data.aliases)
    host_names = {n.lower() for d in forge.native.values() for n in (d.name, *d.aliases)}
    ours = [*lib_cfgpp.BASE_SAMPLERS, *lib_cfgpp.SAMPLERS]
    names = [s.name for s in sd_samplers.all_samplers]
    for definition in ours:
        expected = definition.label + SUFFIX if definition.label.lower() in host_names else definition.label
        assert host.registered_label(definition.label) == expected
        assert names.count(expected) == 1, expected
        data = sd_samplers.all_samplers_map[expected]
        assert data not in forge.native.values()
        assert not {a.lower() for a in data.aliases} & host_names
    assert host.registered_label("Euler a CFG++") == "Euler a CFG++"
    assert host.registered_label("Euler CFG++") == "Euler CFG++" + SUFFIX
    # a twin whose base was renamed copies the options of OUR base
    twin = sd_samplers.all_samplers_map["RES Multistep CFG++" + SUFFIX]
    assert twin.options == {**sd_samplers.all_samplers_map["RES Multistep" + SUFFIX].options, **twin.options}
    forge_cfgpp.register()  # "Reload UI": same result, no duplicates
    assert [s.name for s in sd_samplers.all_samplers] == names


def test_host_native_cfgpp_samplers_keep_their_behaviour(forge):
    """The host's own Euler CFG++ / DPM++ 2M CFG++ give the same latents before and after our script registered."""
    before = {label: txt2img(sampler_name=label, **{**GEN, "cfg_scale": 0.6}).latents
              for label in ("Euler CFG++", "DPM++ 2M CFG++")}
    load_script(CFGPP)
    try:
        for label, latents in before.items():
            assert torch.equal(txt2img(sampler_name=label, **{**GEN, "cfg_scale": 0.6}).latents, latents), label
    finally:
        unload_callbacks(CFGPP)


@pytest.mark.parametrize("label,convention", CASES)
def test_cfgpp_on_forge_equals_the_a1111_run(forge, forge_cfgpp, a1111_reference, label, convention):
    """Ours on the Forge double (post-CFG route) = the same sampler on the A1111 double, to float precision, and
    clearly not the base sampler (what the A1111 route gives on Forge: D_∅ there is the guided prediction)."""
    shared.opts.cfgpp_guidance_convention = convention
    fields = {**GEN, "cfg_scale": _cfg(convention)}
    run = txt2img(sampler_name=glue_host().current().registered_label(label), **fields)
    reference, reference_info = a1111_reference[label, convention]
    torch.testing.assert_close(run.latents, reference, rtol=1e-5, atol=1e-5)
    base = txt2img(sampler_name=BASES[label], **fields).latents
    assert (base - reference).abs().max() > 100 * (run.latents - reference).abs().max() + 1e-3
    for key in ("CFGpp lambda", "CFGpp convention"):
        assert run.extra_generation_params[key] == reference_info[key]


def test_cfgpp_refused_where_forge_would_run_unguided_steps(forge, forge_cfgpp):
    """Forge Classic / Forge 2.x force the CFG scale to 1 for NGMS / early-skip steps, which a post-CFG function
    cannot tell from a guided step: refused before the first model call, naming the host and the setting; no
    infotext of a CFG++ run that did not happen."""
    shared.opts.s_min_uncond = 2.0
    seen = []
    with pytest.raises(ValueError, match=r"reForge.*'Negative Guidance minimum sigma' \(2\)"):
        txt2img(sampler_name="Euler CFG++" + SUFFIX, p_hook=seen.append, **GEN)
    assert "CFGpp lambda" not in seen[0].extra_generation_params


def test_cfgpp_refused_with_an_edit_model_image_cfg(monkeypatch):
    """reForge's edit-model combine is not a CFG a post-CFG function can rescale: refused before sampling."""
    from support.generation import img2img
    load_model("sd15", in_channels=8, cond_stage_key="edit")
    double = ForgeDouble(monkeypatch)
    load_script(CFGPP)
    try:
        with pytest.raises(ValueError, match=r"reForge: an edit \(InstructPix2Pix\) model with Image CFG scale 1.5"):
            img2img(sampler_name="Euler CFG++" + SUFFIX, image_cfg_scale=1.5, **GEN)
    finally:
        unload_callbacks(CFGPP)
        double.close()


def test_pasted_cfgpp_infotext_picks_our_sampler(forge, forge_cfgpp):
    """An image made by our "Euler CFG++" (its infotext has our λ keys) pastes to ours on reForge; one made by
    the host's own sampler keeps the host's."""
    ours = {"Sampler": "Euler CFG++", "CFGpp lambda": "0.56", "CFGpp convention": "CFG/12.5", "CFG scale": "7"}
    forge_cfgpp.on_infotext_pasted("", ours)
    assert ours["Sampler"] == "Euler CFG++" + SUFFIX
    native = {"Sampler": "Euler CFG++", "CFG scale": "0.6"}
    forge_cfgpp.on_infotext_pasted("", native)
    assert native["Sampler"] == "Euler CFG++"


# --- HiDiffusion ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hidiffusion():
    module = load_script(HIDIFFUSION)
    yield module
    module.CONTROLLER.release()
    unload_callbacks(HIDIFFUSION)


def _hd_args(module, **changes):
    spec = module.SPEC
    values = {"enabled": True, "timing": "Fraction of steps", "t1": 0.6, "t2": 0.3, **changes}
    return spec.positional(spec.replace(spec.defaults(), **values))


def _hd_run(module, args, **fields):
    return txt2img([module.HiDiffusionScript()], args, arg_counts=[len(module.SPEC.fields)],
                   **{"seed": 3, "steps": 10, **fields})


def _observed(module, unet, args=None, **fields):
    config = H.make_config(unet, (8, 8), "sd15", t1=0.6, t2=0.3)
    probe = LayerPhaseProbe(unet, config)
    try:
        run = _hd_run(module, args or _hd_args(module), **fields)
    finally:
        probe.close()
    return run, probe.phases(), config


def test_hidiffusion_runs_every_phase_on_forge_as_on_a1111(hidiffusion, monkeypatch):
    """On the Forge double RAD, the avg-pool/bicubic pair (as block patches) and the windows all run at the steps of
    the official rule, and the result equals the A1111 double's; afterwards nothing of ours is left on the UNet or
    on the host's patcher."""
    load_fast_sd15()
    a1111_run, a1111_phases, config = _observed(hidiffusion, shared.sd_model.model.diffusion_model)
    double = ForgeDouble(monkeypatch)
    try:
        run, phases, _ = _observed(hidiffusion, double.unet)
        expected = [H.rau_active(i, 10, config) for i in range(10)]
        assert [(r, p) for r, p, _ in phases] == [(e.rad, e.pool) for e in expected]
        assert any(e.rad for e in expected) and any(e.pool for e in expected)
        assert all(w == 5 for _, _, w in phases)  # every windowed attn1 ran on windows, every call
        assert phases == a1111_phases
        torch.testing.assert_close(run.latents, a1111_run.latents, rtol=1e-5, atol=1e-5)
        assert run.extra_generation_params.get("HiDiffusion preset")
        assert not H.is_patched(double.unet)
        assert shared.sd_model.forge_objects.unet is double.patcher
        assert double.patcher.model_options == {"transformer_options": {}}
        plain = txt2img(seed=3, steps=10).latents
        off = _hd_run(hidiffusion, _hd_args(hidiffusion, enabled=False)).latents
        assert torch.equal(off, plain)
    finally:
        double.close()


def test_hidiffusion_hires_pass_on_forge_as_on_a1111(hidiffusion, monkeypatch):
    """Both passes of a hires generation (RAU-Net also in the hires pass): the patch set is applied and removed per
    pass on the patcher processing gives each pass, and the result equals the A1111 double's."""
    load_fast_sd15()
    args = _hd_args(hidiffusion, hires_rau_net=True)
    fields = dict(enable_hr=True, hr_scale=2.0, hr_second_pass_steps=6, denoising_strength=0.7)
    a1111_run, a1111_phases, _ = _observed(hidiffusion, shared.sd_model.model.diffusion_model, args, **fields)
    double = ForgeDouble(monkeypatch)
    try:
        run, phases, _ = _observed(hidiffusion, double.unet, args, **fields)
        assert phases == a1111_phases and len(phases) > 10
        assert any(pool for _, pool, _ in phases[10:]), "the pool ran in the hires pass"
        torch.testing.assert_close(run.latents, a1111_run.latents, rtol=1e-5, atol=1e-5)
        assert shared.sd_model.forge_objects.unet is double.patcher and not H.is_patched(double.unet)
    finally:
        double.close()


def _refused(module, args, pattern, in_process=True, **fields):
    """Refused with `pattern`; a refusal in `process` (before anything) also leaves no HiDiffusion infotext (one at
    the pass, where another extension's patches become visible, fails the generation: no image, no infotext)."""
    seen = []
    with pytest.raises(ValueError, match=pattern):
        _hd_run(module, args, p_hook=seen.append, **fields)
    assert not in_process or not any(k.startswith("HiDiffusion") for k in seen[0].extra_generation_params)
    assert module.CONTROLLER.p is None and not module.CONTROLLER.state.armed


def test_hidiffusion_refusals_on_forge(hidiffusion, monkeypatch):
    """What would silently not run on reForge is refused before sampling, naming the host and what to change: the
    refiner (swaps the patcher mid-sampling), another extension's attn1 replace patch on a windowed block (attn1 is
    then never called) - with MSW-MSA off the same generation runs."""
    from modules import sd_models
    from support.tiny_models import make_ldm
    load_fast_sd15()
    double = ForgeDouble(monkeypatch)
    sd_models.register_checkpoint("other", make_ldm("sd15", seed=1))
    try:
        _refused(hidiffusion, _hd_args(hidiffusion), r"HiDiffusion on reForge: the refiner \('other'\)",
                 refiner_checkpoint="other", refiner_switch_at=0.5)
        other = double.patcher.clone()
        other.set_model_attn1_replace(lambda q, k, v, extra: q, "output", 9)
        double.model.forge_objects_after_applying_lora.unet = other
        _refused(hidiffusion, _hd_args(hidiffusion), r"reForge: an attn1 replace patch on output block 9 \(MSW-MSA\)",
                 in_process=False)
        assert not H.is_patched(double.unet) and double.model.forge_objects.unet is other
        run = _hd_run(hidiffusion, _hd_args(hidiffusion, msw_msa=False))
        assert run.extra_generation_params.get("HiDiffusion preset")
        assert not H.is_patched(double.unet)
    finally:
        sd_models.forget_checkpoints()
        double.close()


def test_hidiffusion_and_iclight_refused_on_forge_2_and_neo(hidiffusion, monkeypatch):
    """Forge 2.x / Neo run another UNet code (backend.nn.unet): HiDiffusion refuses there before sampling."""
    load_fast_sd15()
    double = ForgeDouble(monkeypatch, version="2.0.1v1.10.1", backend=True)
    try:
        _refused(hidiffusion, _hd_args(hidiffusion), r"HiDiffusion does not run on Forge / Forge Neo")
        assert not H.is_patched(double.unet)
    finally:
        double.close()


# --- IC-Light ------------------------------------------------------------------------------------------------
def test_iclight_refused_on_forge_and_inert_when_off(tmp_path, monkeypatch):
    """IC-Light's weight merge and concat are the patcher's business on Forge: enabled, it is refused before the
    model is touched (weights unchanged), naming the host; disabled, it changes nothing."""
    from support.iclight_fixtures import write_offset_file
    from support.iclight_webui import api_args, fc_on
    write_offset_file(str(tmp_path), "fc.safetensors", in_channels=8, seed=5)
    shared.cmd_opts.iclight_dir = str(tmp_path)
    script = load_script(ICLIGHT)
    try:
        load_model("sd15")
        double = ForgeDouble(monkeypatch)
        try:
            weights = {k: v.clone() for k, v in double.unet.state_dict().items()}
            args = api_args(script, fc_on())
            seen = []
            with pytest.raises(ValueError, match=r"IC-Light does not run on reForge"):
                txt2img([script.ICLightScript()], args, arg_counts=[len(args)], steps=2, p_hook=seen.append)
            assert not any(k.startswith("IC-Light") for k in seen[0].extra_generation_params)
            assert all(torch.equal(v, double.unet.state_dict()[k]) for k, v in weights.items())
            plain = txt2img(seed=3, steps=2).latents
            off = api_args(script, {"enabled": False})
            assert torch.equal(txt2img([script.ICLightScript()], off, arg_counts=[len(off)], seed=3, steps=2).latents,
                               plain)
        finally:
            double.close()
    finally:
        script.MERGER.restore()
        unload_callbacks(ICLIGHT)
        del shared.cmd_opts.iclight_dir
