"""CFG++ sampler core (lib_cfgpp) against references: the WebUI's DDIM CFG++, the base k-diffusion
samplers, plain CFG, hand-computed steps. fp32 tiny real-class models unless stated otherwise."""
from __future__ import annotations

import inspect
import math

import pytest
import torch

import lib_cfgpp
from lib_cfgpp import factory, guidance, registry, samplers
from support.analytic_cfg import AnalyticCFG, guided
from support.cfg_denoiser_double import CFGDenoiserDouble, Unconditional
from support.kdiffusion_import import import_k_diffusion
from support.tiny_models import SDXL_VECTOR_DIM, make_context, make_denoiser, make_ldm

K = import_k_diffusion().sampling
NAMES = [d.label for d in registry.SAMPLERS]
ANCESTRAL = {d.label for d in registry.SAMPLERS if d.ancestral}
BROWNIAN = {d.label for d in registry.SAMPLERS if d.brownian}
NOISY = ANCESTRAL | BROWNIAN  # take eta, s_noise, noise_sampler
LATENT = (2, 4, 8, 8)


# ---------------------------------------------------------------- helpers

@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one intra-op thread is as fast, and far faster when the 2 CPU cores are shared
    (2 spinning OpenMP threads under load made a forward 10-50x slower here). Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models():
    cache = {}

    def get(family):
        if family not in cache:
            ldm = make_ldm(family)
            cache[family] = (ldm, make_denoiser(ldm))
        return cache[family]
    return get


def conds(family, batch=2, same=False):
    c = make_context(family, batch, seed=11)
    u = c.clone() if same else make_context(family, batch, seed=12)
    if family == "sdxl":
        g = torch.Generator().manual_seed(13)
        vec_c = torch.randn(batch, SDXL_VECTOR_DIM, generator=g)
        vec_u = vec_c.clone() if same else torch.randn(batch, SDXL_VECTOR_DIM, generator=g)
        return {"crossattn": c, "vector": vec_c}, {"crossattn": u, "vector": vec_u}
    return c, u


def extra(family, cfg_scale, same=False, s_min_uncond=0.0, image_cond=None):
    c, u = conds(family, same=same)
    return {"cond": c, "uncond": u, "cond_scale": cfg_scale, "s_min_uncond": s_min_uncond, "image_cond": image_cond}


def karras(den, n):
    return K.get_sigmas_karras(n, den.sigmas[0].item(), den.sigmas[-1].item())


def start_noise(seed=0, shape=LATENT):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def seeded_noise(x, seed=100):
    gen = torch.Generator().manual_seed(seed)
    return lambda sigma, sigma_next: torch.randn(x.shape, generator=gen, dtype=x.dtype)


def base_fn(label):
    return registry.base_function(registry.find(label), K)


def run_cfgpp(label, model, x, sigmas, extra_args, convention=None, noise_seed=100, **kw):
    fn = factory.make_sampler(label, convention=convention)
    if label in NOISY:
        kw.setdefault("noise_sampler", seeded_noise(x, noise_seed))
    return fn(model, x, sigmas, extra_args=extra_args, disable=True, **kw)


def run_base(label, model, x, sigmas, extra_args, noise_seed=100):
    kw = {"noise_sampler": seeded_noise(x, noise_seed)} if label in NOISY else {}
    return base_fn(label)(model, x, sigmas, extra_args=extra_args, disable=True, **kw)


def assert_close(a, b, atol=1e-5, rtol=1e-5):
    err = (a - b).abs().max().item()
    assert torch.allclose(a, b, atol=atol, rtol=rtol), f"max abs err {err:.3g}"


# 1. DDIM CFG++ parity is tested through the host double's own ddim_cfgpp: tests/test_cfgpp_webui.py


# ---------------------------------------------------------------- 2. reductions to the base samplers

@pytest.mark.parametrize("label", NAMES)
@pytest.mark.parametrize("schedule", ["txt2img", "img2img"])
def test_lambda_zero_equals_base_sampler_run_unconditionally(models, label, schedule):
    ldm, den = models("sd15")
    sigmas = karras(den, 5)
    if schedule == "img2img":  # the WebUI's sigma_sched = sigmas[steps - t_enc - 1:]
        sigmas = sigmas[2:]
    x = start_noise(2) * sigmas[0]
    args = extra("sd15", 0.0)
    cfgpp = run_cfgpp(label, CFGDenoiserDouble(den), x, sigmas, args)
    base = run_base(label, Unconditional(den, args["uncond"]), x, sigmas, {})
    assert_close(cfgpp, base)


@pytest.mark.parametrize("label", NAMES)
def test_equal_cond_and_uncond_predictions_give_the_base_sampler(models, label):
    ldm, den = models("sd15")
    sigmas = karras(den, 5)
    x = start_noise(3) * sigmas[0]
    args = extra("sd15", 7.0, same=True)  # D_c == D_∅, cfg 7
    cfgpp = run_cfgpp(label, CFGDenoiserDouble(den), x, sigmas, args)
    base = run_base(label, CFGDenoiserDouble(den), x, sigmas, args)
    assert_close(cfgpp, base)
    # and the guidance does act when the predictions differ (the check above is not vacuous)
    guided = run_cfgpp(label, CFGDenoiserDouble(den), x, sigmas, extra("sd15", 7.0))
    assert (guided - cfgpp).abs().max() > 1e-3


# ---------------------------------------------------------------- 3. Euler CFG++ vs plain CFG

def test_one_euler_cfgpp_step_equals_plain_cfg_euler_step_with_rescaled_omega(models):
    """Let r = σ_{i+1}/σ_i, G = D_c − D_∅.

    Euler CFG++:  x' = D_λ + r(x − D_∅)       = r·x + (1 − r)·D_∅ + λ·G
    Plain CFG Euler with scale ω (D_ω = D_∅ + ωG), x' = x + (σ_{i+1} − σ_i)(x − D_ω)/σ_i
                                               = r·x + (1 − r)·D_ω = r·x + (1 − r)·D_∅ + (1 − r)·ω·G
    Equal for every G iff (1 − r)·ω = λ, i.e. ω = λ/(1 − r) = λσ_i/(σ_i − σ_{i+1})."""
    ldm, den = models("sd15")
    sigmas = karras(den, 8)[2:4]
    x = start_noise(4) * sigmas[0]
    lam = 0.6
    omega = lam * sigmas[0].item() / (sigmas[0] - sigmas[1]).item()

    cfgpp = run_cfgpp("Euler CFG++", CFGDenoiserDouble(den), x, sigmas, extra("sd15", lam),
                      convention=lib_cfgpp.LAMBDA_CONVENTION)
    plain = K.sample_euler(CFGDenoiserDouble(den), x, sigmas, extra_args=extra("sd15", omega), disable=True)
    assert_close(cfgpp, plain)
    # the default convention reads the same λ from CFG 12.5·λ
    default = run_cfgpp("Euler CFG++", CFGDenoiserDouble(den), x, sigmas, extra("sd15", 12.5 * lam))
    assert_close(default, plain)
    # with ω = λ (no rescale) the plain step differs: the identity is specific
    other = K.sample_euler(CFGDenoiserDouble(den), x, sigmas, extra_args=extra("sd15", lam), disable=True)
    assert (other - cfgpp).abs().max() > 1e-3


# ---------------------------------------------------------------- 4. DPM++ 2M / 2S a step rules

def test_dpmpp_2m_cfgpp_first_step_equals_euler_cfgpp(models):
    ldm, den = models("sd15")
    sigmas = karras(den, 6)[:2]
    x = start_noise(5) * sigmas[0]
    args = extra("sd15", 7.5)
    euler = run_cfgpp("Euler CFG++", CFGDenoiserDouble(den), x, sigmas, args)
    dpm = run_cfgpp("DPM++ 2M CFG++", CFGDenoiserDouble(den), x, sigmas, args)
    assert torch.equal(euler, dpm)


def test_dpmpp_2m_cfgpp_second_step_is_the_official_post_fix_form():
    """Hand computation of two steps: x1 by Euler CFG++, then with e^{-h} = σ2/σ1, r = ln(σ0/σ1)/ln(σ1/σ2):
    x2 = D_λ,1 + (σ2/σ1)(x1 − D_∅,1) + (1 − σ2/σ1)/(2r)·(D_λ,1 − D_∅,0)."""
    lam, s0, s1, s2 = 0.7, 6.0, 2.5, 0.9
    x0 = start_noise(6).double() * s0
    out = samplers.sample_dpmpp_2m_cfg_pp(AnalyticCFG(), x0, torch.tensor([s0, s1, s2], dtype=torch.float64),
                                          extra_args={"cond_scale": lam}, multiplier=1.0)
    x1 = guided(x0, s0, lam) + (s1 / s0) * (x0 - AnalyticCFG.d_uncond(x0, s0))
    r = math.log(s0 / s1) / math.log(s1 / s2)
    ratio = s2 / s1
    common = guided(x1, s1, lam) + ratio * (x1 - AnalyticCFG.d_uncond(x1, s1))
    expected = common + (1 - ratio) / (2 * r) * (guided(x1, s1, lam) - AnalyticCFG.d_uncond(x0, s0))
    assert torch.allclose(out, expected, atol=1e-12, rtol=0)
    pre_fix = common + (1 - ratio) / (2 * r) * (AnalyticCFG.d_uncond(x1, s1) - AnalyticCFG.d_uncond(x0, s0))
    assert (out - pre_fix).abs().max() > 1e-3  # the SDXL-file (pre-fix) form is a different sampler


@pytest.mark.parametrize("eta", [1.0, 0.5])
def test_dpmpp_2s_ancestral_cfgpp_matches_a_hand_computed_step(eta):
    """σ_u = min(σ', η·σ'·√(σ² − σ'²)/σ), σ_d = √(σ'² − σ_u²), σ_s = √(σ·σ_d);
    u = (σ_s/σ)x + (1 − σ_s/σ)D_∅(x, σ);  x' = D_λ(u, σ_s) + (σ_d/σ)(x − D_∅(u, σ_s)) + σ_u·z."""
    lam, s, s_next = 0.6, 4.0, 1.5
    x = start_noise(7).double() * s
    z = start_noise(8).double()
    model = AnalyticCFG()
    out = samplers.sample_dpmpp_2s_ancestral_cfg_pp(
        model, x, torch.tensor([s, s_next], dtype=torch.float64), extra_args={"cond_scale": lam}, eta=eta,
        noise_sampler=lambda a, b: z, multiplier=1.0)
    s_up = min(s_next, eta * s_next * math.sqrt(s ** 2 - s_next ** 2) / s)
    s_down = math.sqrt(s_next ** 2 - s_up ** 2)
    s_mid = math.sqrt(s * s_down)
    u = (s_mid / s) * x + (1 - s_mid / s) * AnalyticCFG.d_uncond(x, s)
    expected = guided(u, s_mid, lam) + (s_down / s) * (x - AnalyticCFG.d_uncond(u, s_mid)) + s_up * z
    assert model.calls == pytest.approx([s, s_mid])
    assert torch.allclose(out, expected, atol=1e-12, rtol=0)


def test_last_step_to_sigma_zero_returns_the_guided_prediction():
    sig = torch.tensor([2.0, 0.0], dtype=torch.float64)
    x = start_noise(9).double() * 2.0
    for label in NAMES:
        kw = {"noise_sampler": seeded_noise(x)} if label in NOISY else {}
        out = registry.find(label).function(AnalyticCFG(), x, sig, extra_args={"cond_scale": 0.5}, multiplier=1.0, **kw)
        assert torch.allclose(out, guided(x, 2.0, 0.5), atol=1e-12), label


def _schedules():
    smin, smax, n = 0.0292, 14.6146, 8
    karras_ = K.get_sigmas_karras(n, smin, smax)
    ays = [14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029, 0.0]  # WebUI AYS SD1.5
    kl = torch.tan(torch.arange(n + 1) / n * math.atan(smin) + (1 - torch.arange(n + 1) / n) * math.atan(smax))
    return {
        "karras": karras_, "exponential": K.get_sigmas_exponential(n, smin, smax),
        "polyexponential": K.get_sigmas_polyexponential(n, smin, smax), "align_your_steps": torch.tensor(ays),
        "kl_optimal (no final 0)": kl, "discard penultimate": torch.cat([karras_[:-2], karras_[-1:]]),
        "img2img tail": karras_[4:],
    }


@pytest.mark.parametrize("schedule", list(_schedules()))
def test_every_schedule_shape_reduces_to_the_base_sampler_at_lambda_zero(schedule):
    """Schedule-agnostic: the WebUI's schedule types (final 0 or not, irregular spacing, truncated)."""
    sigmas = _schedules()[schedule].double()
    x = start_noise(20).double() * sigmas[0]

    class Uncond(torch.nn.Module):
        def forward(self, x, sigma, **_):
            return AnalyticCFG.d_uncond(x, sigma[0].item())
    for label in NAMES:
        fn = registry.find(label).function
        zero = fn(AnalyticCFG(), x, sigmas, extra_args={"cond_scale": 0.0}, multiplier=1.0,
                  **({"noise_sampler": seeded_noise(x)} if label in NOISY else {}))
        base = run_base(label, Uncond(), x, sigmas, {})
        assert torch.allclose(zero, base, atol=1e-10, rtol=1e-10), (label, (zero - base).abs().max().item())
        guided_run = fn(AnalyticCFG(), x, sigmas, extra_args={"cond_scale": 0.6}, multiplier=1.0,
                        **({"noise_sampler": seeded_noise(x)} if label in NOISY else {}))
        assert torch.isfinite(guided_run).all() and (guided_run - zero).abs().max() > 1e-3


# ---------------------------------------------------------------- 5. determinism, families, host paths

@pytest.mark.parametrize("label", NAMES)
def test_seeded_determinism_through_the_randn_like_hook(models, label):
    ldm, den = models("sd15")
    sigmas = karras(den, 4)
    x = start_noise(10) * sigmas[0]

    def run(seed):
        gen = torch.Generator().manual_seed(seed)
        calls = []

        def randn_like(t):
            calls.append(tuple(t.shape))
            return torch.randn(t.shape, generator=gen, dtype=t.dtype)

        def brownian_noise(t, sigma_min, sigma_max):  # SDE samplers without a noise sampler: a tree per seed
            calls.append(("tree", float(sigma_min), float(sigma_max)))
            return lib_cfgpp.BrownianTreeNoise(t, sigma_min, sigma_max, seed=[seed + b for b in range(t.shape[0])])
        fn = factory.make_sampler(label, randn_like=randn_like, brownian_noise=brownian_noise)
        return fn(CFGDenoiserDouble(den), x, sigmas, extra_args=extra("sd15", 6.0)), calls

    a, calls_a = run(1)
    b, _ = run(1)
    c, _ = run(2)
    assert torch.equal(a, b)
    if label in ANCESTRAL:
        assert calls_a == [tuple(x.shape)] * (len(sigmas) - 2)  # one draw per step with σ_{i+1} > 0
        assert (a - c).abs().max() > 1e-3
    elif label in BROWNIAN:
        assert calls_a == [("tree", float(sigmas[-2]), float(sigmas[0]))]  # built once, on the positive sigmas
        assert (a - c).abs().max() > 1e-3
    else:
        assert calls_a == [] and torch.equal(a, c)


@pytest.mark.parametrize("label", NAMES)
@pytest.mark.parametrize("family", ["sd21", "sdxl"])
def test_v_prediction_and_sdxl_layout(models, label, family):
    ldm, den = models(family)
    sigmas = karras(den, 4)
    x = start_noise(11) * sigmas[0]
    out = run_cfgpp(label, CFGDenoiserDouble(den), x, sigmas, extra(family, 7.0))
    assert out.shape == x.shape and torch.isfinite(out).all()
    base = run_base(label, Unconditional(den, extra(family, 0.0)["uncond"]), x, sigmas, {})
    zero = run_cfgpp(label, CFGDenoiserDouble(den), x, sigmas, extra(family, 0.0))
    assert_close(zero, base)
    assert (out - zero).abs().max() > 1e-4  # guidance acts (tiny random models: weak text effect)


@pytest.mark.parametrize("label", NAMES)
def test_skipped_uncond_pass_degenerates_to_the_base_sampler_on_the_cond_prediction(models, label):
    """NGMS / skip early CFG: the host puts D_c in the uncond slot and returns D_c, so D_λ = D_∅ = D_c."""
    ldm, den = models("sd15")
    sigmas = karras(den, 4)
    x = start_noise(12) * sigmas[0]
    args = extra("sd15", 7.0, s_min_uncond=1e9)  # every call below the NGMS threshold
    double = CFGDenoiserDouble(den, s_min_uncond_all=True)
    cfgpp = run_cfgpp(label, double, x, sigmas, args)
    assert all(double.skipped) and double.skipped
    base = run_base(label, CFGDenoiserDouble(den, s_min_uncond_all=True), x, sigmas, args)
    assert_close(cfgpp, base)

    # the WebUI's default NGMS (odd model calls only) and skip-early-CFG mix skipped and full calls
    for double in (CFGDenoiserDouble(den), CFGDenoiserDouble(den, skip_early_cond=0.5, total_steps=4)):
        out = run_cfgpp(label, double, x, sigmas, args if double.skip_early_cond == 0 else extra("sd15", 7.0))
        assert any(double.skipped) and not all(double.skipped)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("label", NAMES)
def test_inpainting_blend_keeps_the_preserved_region_on_the_base_trajectory(models, label):
    """The host blends D_λ (D·nmask + init·mask); the core blends D_∅ the same way, so in the preserved
    region D_λ = D_∅ = init and the trajectory is the base sampler's on D = init."""
    ldm, den = models("sd15")
    sigmas = karras(den, 4)
    x = start_noise(13) * sigmas[0]
    init = start_noise(14) * 0.5
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4] = 1.0  # left half preserved

    def masked():
        d = CFGDenoiserDouble(den)
        d.mask, d.nmask, d.init_latent = mask, 1 - mask, init
        return d
    args = extra("sd15", 7.0)
    trace = []
    cfgpp = run_cfgpp(label, masked(), x, sigmas, args, callback=lambda d: trace.append(d["x"][..., :4].clone()))
    base = run_base(label, masked(), x, sigmas, args)
    keep = mask.bool().expand_as(x)
    assert_close(cfgpp[keep], base[keep])
    assert (cfgpp[~keep] - base[~keep]).abs().max() > 1e-3
    # without the uncond blend the preserved region leaves the base trajectory
    # (the final step lands on D_λ = init either way, so compare the intermediate states)
    unblended = []
    run_cfgpp(label, masked(), x, sigmas, args, uncond_blend=lambda model, d, sigma: d,
              callback=lambda d: unblended.append(d["x"][..., :4].clone()))
    assert max((a - b).abs().max().item() for a, b in zip(trace, unblended)) > 1e-3


def test_edit_model_uses_the_fully_unconditional_chunk():
    """InstructPix2Pix 3-way batch [cond+img, uncond+img, uncond+zeros]: D_∅ is the last chunk."""
    ldm = make_ldm("sd15", in_channels=8, cond_stage_key="edit")
    den = make_denoiser(ldm)
    sigmas = karras(den, 6)[1:3]
    x = start_noise(15) * sigmas[0]
    image = start_noise(16) * 0.5
    double = CFGDenoiserDouble(den, cond_stage_key="edit")
    double.image_cfg_scale, double.init_latent = 1.5, image
    args = extra("sd15", 7.5, image_cond=image)
    out = run_cfgpp("Euler CFG++", double, x, sigmas, args)

    c, u = args["cond"], args["uncond"]
    s_in = sigmas[0] * x.new_ones([2])
    with torch.no_grad():
        d_cond = den(x, s_in, cond={"c_crossattn": [c], "c_concat": [image]})
        d_img = den(x, s_in, cond={"c_crossattn": [u], "c_concat": [image]})
        d_unc = den(x, s_in, cond={"c_crossattn": [u], "c_concat": [torch.zeros_like(image)]})
    d_lam = d_unc + 7.5 / 12.5 * (d_cond - d_img) + 1.5 * (d_img - d_unc)
    expected = d_lam + (x - d_unc) / sigmas[0] * sigmas[1]
    assert_close(out, expected, atol=2e-5)
    wrong = d_lam + (x - d_img) / sigmas[0] * sigmas[1]
    assert (out - wrong).abs().max() > 1e-3


def test_callbacks_carry_the_k_diffusion_keys_and_the_guided_prediction():
    sig = torch.tensor([3.0, 1.0, 0.0], dtype=torch.float64)
    x = start_noise(17).double() * 3.0
    for label in NAMES:
        seen = []
        registry.find(label).function(AnalyticCFG(), x, sig, extra_args={"cond_scale": 0.5}, callback=seen.append,
                                      multiplier=1.0, **({"noise_sampler": seeded_noise(x)} if label in NOISY else {}))
        assert [d["i"] for d in seen] == [0, 1], label
        assert set(seen[0]) == {"x", "i", "sigma", "sigma_hat", "denoised"}
        assert torch.equal(seen[0]["x"], x) and seen[0]["sigma"] == 3.0
        assert torch.allclose(seen[0]["denoised"], guided(x, 3.0, 0.5))


def test_a_denoiser_without_the_uncond_prediction_raises_a_clear_error():
    class Plain(torch.nn.Module):
        def forward(self, x, sigma, **_):
            return x * 0.5
    sig = torch.tensor([2.0, 1.0])
    for label in NAMES:
        with pytest.raises(RuntimeError, match="unconditional prediction"):
            registry.find(label).function(Plain(), torch.zeros(1, 4, 2, 2), sig)


# ---------------------------------------------------------------- factory, registry, conventions

def test_sampler_arms_the_denoiser_with_the_convention_multiplier():
    model = AnalyticCFG()
    factory.make_sampler("Euler CFG++")(model, torch.zeros(1, 4, 2, 2), torch.tensor([1.0, 0.5]))
    assert model.need_last_noise_uncond is True and model.cond_scale_miltiplier == pytest.approx(1 / 12.5)
    setting = {"value": lib_cfgpp.DDIM_CONVENTION}
    fn = factory.make_sampler("DPM++ 2M CFG++", convention=lambda: setting["value"])
    setting["value"] = lib_cfgpp.LAMBDA_CONVENTION  # read per call, not at registration
    model = AnalyticCFG()
    fn(model, torch.zeros(1, 4, 2, 2), torch.tensor([1.0, 0.5]))
    assert model.cond_scale_miltiplier == 1.0
    with pytest.raises(ValueError, match="convention"):
        factory.make_sampler("Euler CFG++", convention="CFG/10")


def test_bound_samplers_expose_the_k_diffusion_signature_the_webui_inspects():
    bound = factory.make_samplers(randn_like=torch.randn_like)
    assert list(bound) == NAMES
    for label, fn in bound.items():
        params = inspect.signature(fn).parameters
        assert list(params)[:6] == ["model", "x", "sigmas", "extra_args", "callback", "disable"]
        assert ("eta" in params and "noise_sampler" in params and "s_noise" in params) == (label in NOISY)
        assert not {"n", "sigma_min", "sigma_max", "timesteps", "sigma_sched"} & set(params)
        assert fn.cfgpp_definition.label == label


def test_registry_labels_aliases_and_bases():
    schedule_suffixes = ["Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform",
                         "KL Optimal", "Align Your Steps", "Simple", "Normal", "DDIM", "Beta", "automatic",
                         "uniform", "karras", "exponential", "polyexponential", "sgm_uniform", "SGMUniform",
                         "kl_optimal", "align_your_steps", "simple", "normal", "ddim", "beta"]
    everything = (*registry.SAMPLERS, *registry.BASE_SAMPLERS)
    names = [n.lower() for d in everything for n in (d.label, *d.aliases)]
    assert len(names) == len(set(names))
    assert NAMES == ["Euler CFG++", "Euler a CFG++", "DPM++ 2M CFG++", "DPM++ 2S a CFG++", "DPM++ SDE CFG++",
                     "DPM++ 2M SDE CFG++", "DPM++ 3M SDE CFG++", "Heun CFG++", "DPM2 CFG++", "RES Multistep CFG++",
                     "RES Multistep Ancestral CFG++", "Gradient Estimation CFG++"]
    assert [d.label for d in registry.BASE_SAMPLERS] == ["RES Multistep", "RES Multistep Ancestral",
                                                         "Gradient Estimation"]
    ours = {d.label: d for d in registry.BASE_SAMPLERS}
    for d in everything:
        assert not any(d.label.endswith(" " + s) for s in schedule_suffixes), d.label
        assert registry.find(d.label.upper()) is d
        assert all(registry.find(a) is d for a in d.aliases)
    for d in registry.SAMPLERS:
        assert d.base_label + " CFG++" == d.label
        if d.base_label in ours:  # twins of our own bases: their base function and noise kind
            assert registry.base_function(d) is ours[d.base_label].function
            assert d.ancestral == ours[d.base_label].ancestral and d.extra_params == ours[d.base_label].extra_params
        else:
            assert registry.base_function(d, K) is getattr(K, d.base_function)
    assert registry.find("k_euler_cfg_pp").label == "Euler CFG++"
    assert registry.find("Euler") is None and registry.find(None) is None


def test_conventions_and_lambda():
    assert guidance.guidance_lambda(7.5) == pytest.approx(0.6)
    assert guidance.guidance_lambda(0.6, "CFG=lambda") == pytest.approx(0.6)
    assert guidance.cfg_scale_for_lambda(0.6, "CFG/12.5") == pytest.approx(7.5)
    assert guidance.normalize_convention("comfyui") == lib_cfgpp.LAMBDA_CONVENTION
    assert guidance.normalize_convention(None) == lib_cfgpp.DEFAULT_CONVENTION == "CFG/12.5"
    for name in lib_cfgpp.CONVENTIONS:
        assert "," not in name and ":" not in name  # safe as an infotext value
    with pytest.raises(ValueError):
        guidance.multiplier_for("twelve")
