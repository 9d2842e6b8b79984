"""The CFG++ sampler family beyond the first four (issue 12): DPM++ SDE / 2M SDE / 3M SDE, Heun, DPM2, RES
multistep (plain and ancestral), gradient estimation, and the base samplers RES multistep and gradient estimation.

- the first two (3M SDE: three) steps of every new sampler against formulas written out here from the closed-form
  denoisers of support/analytic_cfg.py, never by calling the code under test, each with a negative control (the
  form some upstream uses, or the plain-CFG alternative) that the comparison tells apart;
- reductions to the base samplers with the same noise sampler (i.i.d. and Brownian tree), at several eta / s_noise,
  and between samplers (2M SDE at η = 0 is 2M, RES ancestral at η = 0 is RES, gradient estimation at γ = 1 is Euler);
- the core's Brownian tree against k-diffusion's (same seeds, same noise).
float64 unless stated; the real-model and host-level checks of every sampler are in test_cfgpp_core.py and
test_cfgpp_webui.py (parametrized over the registry)."""
import math

import pytest
import torch

import lib_cfgpp
from lib_cfgpp import registry
from support.analytic_cfg import AnalyticCFG, Plain, guided
from support.kdiffusion_import import import_k_diffusion

K = import_k_diffusion().sampling
Du, Dc = AnalyticCFG.d_uncond, AnalyticCFG.d_cond
LAM = 0.7
SHAPE = (2, 3, 4, 4)


def start(seed=0, scale=1.0):
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def sig(*values):
    return torch.tensor(values, dtype=torch.float64)


class KeyedNoise:
    """A noise sampler whose draw depends only on its arguments (σ_a, σ_b); records the calls."""

    def __init__(self, salt=0):
        self.salt = salt
        self.calls = []

    def z(self, a, b):
        seed = (round(float(a) * 1e6) * 7919 + round(float(b) * 1e6) + self.salt) % (2 ** 62)
        return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)

    def __call__(self, a, b):
        self.calls += [float(a), float(b)]
        return self.z(a, b)


def ancestral(s_from, s_to, eta):
    """k-diffusion's get_ancestral_step, written out: (σ_down, σ_up)."""
    s_up = min(s_to, eta * math.sqrt(s_to ** 2 * (s_from ** 2 - s_to ** 2) / s_from ** 2))
    return math.sqrt(s_to ** 2 - s_up ** 2), s_up


def cfgpp(fn, sigmas, x, **kw):
    model = AnalyticCFG()
    return fn(model, x, sigmas, extra_args={"cond_scale": LAM}, multiplier=1.0, **kw), model.calls


def assert_hand(out, expected, alternative=None):
    err = (out - expected).abs().max().item()
    assert err < 1e-11, err
    if alternative is not None:
        assert (out - alternative).abs().max().item() > 1e-4, "the alternative form must be told apart"


# ---------------------------------------------------------------- hand-written steps: second order

def test_heun_cfgpp_two_steps_by_hand():
    """x̄ = x + (σ' − σ)(x − D_∅)/σ (Euler stage on D_∅), second call at (x̄, σ');
    x' = x + (σ' − σ)/2·((x − D_∅(x))/σ + (x̄ − D_∅(x̄))/σ') + ½(g(x) + g(x̄)), g = D_λ − D_∅."""
    s = [5.0, 2.0, 0.7]
    x0 = start(1, s[0])
    out, calls = cfgpp(lib_cfgpp.sample_heun_cfg_pp, sig(*s), x0)

    def step(x, a, b, predictor_guided=False):
        u = Du(x, a)
        xb = x + (b - a) * (x - u) / a + ((guided(x, a, LAM) - u) if predictor_guided else 0)
        ub = Du(xb, b)
        guidance = ((guided(x, a, LAM) - u) + (guided(xb, b, LAM) - ub)) / 2
        return x + (b - a) / 2 * ((x - u) / a + (xb - ub) / b) + guidance
    x1 = step(x0, s[0], s[1])
    alternative = step(step(x0, s[0], s[1], True), s[1], s[2], True)  # guided (Euler CFG++) predictor
    assert_hand(out, step(x1, s[1], s[2]), alternative)
    assert calls == pytest.approx([s[0], s[1], s[1], s[2]])
    last, calls = cfgpp(lib_cfgpp.sample_heun_cfg_pp, sig(2.0, 0.0), x0)
    assert_hand(last, guided(x0, 2.0, LAM)) and calls == [2.0]


def test_dpm2_cfgpp_two_steps_by_hand():
    """σ_m = √(σσ'); x̄ = x + (σ_m − σ)(x − D_∅)/σ; x' = x + (σ' − σ)(x̄ − D_∅(x̄, σ_m))/σ_m + g(x̄, σ_m)."""
    s = [6.0, 2.5, 0.9]
    x0 = start(2, s[0])
    out, calls = cfgpp(lib_cfgpp.sample_dpm_2_cfg_pp, sig(*s), x0)

    def step(x, a, b, weight=1.0):
        m = math.sqrt(a * b)
        xb = x + (m - a) * (x - Du(x, a)) / a
        return x + (b - a) * (xb - Du(xb, m)) / m + weight * (guided(xb, m, LAM) - Du(xb, m))
    expected = step(step(x0, s[0], s[1]), s[1], s[2])
    # the literal "x0 from D_λ(x̄), noise from D_∅(x̄)" in the σ form weights g by σ/σ_m instead of 1
    literal = step(step(x0, s[0], s[1], math.sqrt(s[0] / s[1])), s[1], s[2], math.sqrt(s[1] / s[2]))
    assert_hand(out, expected, literal)
    assert calls == pytest.approx([s[0], math.sqrt(s[0] * s[1]), s[1], math.sqrt(s[1] * s[2])])


# ---------------------------------------------------------------- hand-written steps: SDE

@pytest.mark.parametrize("eta,s_noise", [(1.0, 1.0), (0.6, 0.8)])
def test_dpmpp_sde_cfgpp_two_steps_by_hand(eta, s_noise):
    """σ_s = √(σσ'); (σ_d1, σ_u1) = ancestral(σ, σ_s); x̄ = (σ_d1/σ)x + (1 − σ_d1/σ)D_∅ + s_noise·σ_u1·z(σ, σ_s);
    (σ_d, σ_u) = ancestral(σ, σ'); x' = D_λ(x̄, σ_s) + (σ_d/σ)(x − D_∅(x̄, σ_s)) + s_noise·σ_u·z(σ, σ')."""
    s = [7.0, 3.0, 1.1]
    x0 = start(3, s[0])
    noise = KeyedNoise()
    out, calls = cfgpp(lib_cfgpp.sample_dpmpp_sde_cfg_pp, sig(*s), x0, eta=eta, s_noise=s_noise, noise_sampler=noise)

    def step(x, a, b, reforge=False):
        m = math.sqrt(a * b)
        d1, u1 = ancestral(a, m, eta)
        xb = (d1 / a) * x + (1 - d1 / a) * Du(x, a) + s_noise * u1 * noise.z(a, m)
        d2, u2 = ancestral(a, b, eta)
        direction = Du(x, a) if reforge else Du(xb, m)  # reForge: the first call's noise direction
        return guided(xb, m, LAM) + (d2 / a) * (x - direction) + s_noise * u2 * noise.z(a, b)
    expected = step(step(x0, s[0], s[1]), s[1], s[2])
    assert_hand(out, expected, step(step(x0, s[0], s[1], True), s[1], s[2], True))
    mids = [math.sqrt(s[0] * s[1]), math.sqrt(s[1] * s[2])]
    assert calls == pytest.approx([s[0], mids[0], s[1], mids[1]])
    assert noise.calls == pytest.approx([s[0], mids[0], s[0], s[1], s[1], mids[1], s[1], s[2]])


@pytest.mark.parametrize("solver_type", ["midpoint", "heun"])
def test_dpmpp_2m_sde_cfgpp_two_steps_by_hand(solver_type):
    """h = ln(σ/σ'), ρ = e^{−(1+η)h}; x1 = D_λ,0 + ρ0(x0 − D_∅,0) + s_noise·σ1·√(1 − e^{−2ηh0})·z(σ0, σ1);
    x2 = D_λ,1 + ρ1(x1 − D_∅,1) + c·(D_λ,1 − D_∅,0) + noise, r = h0/h1, c = (1 − ρ1)/(2r) (midpoint) or
    (1 − (1 − ρ1)/((1+η)h1))/r (heun)."""
    eta, s_noise = 0.8, 0.9
    s = [8.0, 3.0, 1.2]
    x0 = start(4, s[0])
    noise = KeyedNoise(1)
    out, calls = cfgpp(lib_cfgpp.sample_dpmpp_2m_sde_cfg_pp, sig(*s), x0, eta=eta, s_noise=s_noise, noise_sampler=noise,
                       solver_type=solver_type)
    h0, h1 = math.log(s[0] / s[1]), math.log(s[1] / s[2])
    rho0, rho1 = math.exp(-(1 + eta) * h0), math.exp(-(1 + eta) * h1)

    def noise_term(a, b, h):
        return s_noise * b * math.sqrt(1 - math.exp(-2 * eta * h)) * noise.z(a, b)
    x1 = guided(x0, s[0], LAM) + rho0 * (x0 - Du(x0, s[0])) + noise_term(s[0], s[1], h0)
    r = h0 / h1
    c = (1 - rho1) / (2 * r) if solver_type == "midpoint" else (1 - (1 - rho1) / ((1 + eta) * h1)) / r
    common = guided(x1, s[1], LAM) + rho1 * (x1 - Du(x1, s[1])) + noise_term(s[1], s[2], h1)
    expected = common + c * (guided(x1, s[1], LAM) - Du(x0, s[0]))
    guided_history = common + c * (guided(x1, s[1], LAM) - guided(x0, s[0], LAM))  # a ComfyUI custom node's form
    assert_hand(out, expected, guided_history)
    assert calls == [s[0], s[1]] and noise.calls == pytest.approx([s[0], s[1], s[1], s[2]])


def test_dpmpp_3m_sde_cfgpp_three_steps_by_hand():
    """H = (1+η)h, φ₂ = (e^{−H} − 1)/H + 1, φ₃ = φ₂/H − ½; x' = D_λ,i + e^{−H}(x − D_∅,i) + E + noise with
    E = 0, then φ₂(D_λ,1 − D_∅,0)/r₀, then φ₂(δ₀ + (δ₀ − δ₁)r₀/(r₀+r₁)) − φ₃(δ₀ − δ₁)/(r₀+r₁),
    δ₀ = (D_λ,2 − D_∅,1)/r₀, δ₁ = (D_∅,1 − D_∅,0)/r₁, r₀ = h_{i−1}/h, r₁ = h_{i−2}/h."""
    eta, s_noise = 0.5, 1.0
    s = [9.0, 4.0, 1.6, 0.5]
    x = [start(5, s[0])]
    noise = KeyedNoise(2)
    out, calls = cfgpp(lib_cfgpp.sample_dpmpp_3m_sde_cfg_pp, sig(*s), x[0], eta=eta, s_noise=s_noise,
                       noise_sampler=noise)
    h = [math.log(s[i] / s[i + 1]) for i in range(3)]

    def run(history_guided):
        xs, us, gs = [x[0]], [], []
        for i in range(3):
            H = (1 + eta) * h[i]
            u, g = Du(xs[i], s[i]), guided(xs[i], s[i], LAM)
            us.append(u)
            gs.append(g)
            hist = gs if history_guided else us
            new = g + math.exp(-H) * (xs[i] - u)
            phi2 = (math.exp(-H) - 1) / H + 1
            phi3 = phi2 / H - 0.5
            if i == 1:
                new = new + phi2 * (g - hist[0]) / (h[0] / h[1])
            elif i == 2:
                r0, r1 = h[1] / h[2], h[0] / h[2]
                d0, d1 = (g - hist[1]) / r0, (hist[1] - hist[0]) / r1
                new = new + phi2 * (d0 + (d0 - d1) * r0 / (r0 + r1)) - phi3 * (d0 - d1) / (r0 + r1)
            new = new + s_noise * s[i + 1] * math.sqrt(1 - math.exp(-2 * eta * h[i])) * noise.z(s[i], s[i + 1])
            xs.append(new)
        return xs[-1]
    assert_hand(out, run(False), run(True))  # reForge: differences of D_λ only
    assert calls == s[:3] and noise.calls == pytest.approx([s[0], s[1], s[1], s[2], s[2], s[3]])


# ---------------------------------------------------------------- hand-written steps: RES multistep

def _res_coefficients(t_prev, t_old, t, t_next):
    h = t_next - t
    c2 = (t_prev - t_old) / h
    phi1 = (1 - math.exp(-h)) / h
    phi2 = (1 - phi1) / h
    return h, phi1 - phi2 / c2, phi2 / c2


def t_of(sigma):
    return -math.log(sigma)


@pytest.mark.parametrize("ancestral_eta", [None, 0.6])
def test_res_multistep_base_two_steps_by_hand(ancestral_eta):
    """Step 0 (Euler, to σ_d): x1 = x0 + (σ_d0 − σ0)(x0 − D0)/σ0 (+ s_noise·σ_u0·z); step 1: h = t(σ_d1) − t(σ1),
    c₂ = (t(σ0) − t(σ_d0))/h, φ₁ = (1 − e^{−h})/h, φ₂ = (1 − φ₁)/h, b₁ = φ₁ − φ₂/c₂, b₂ = φ₂/c₂:
    x2 = e^{−h}x1 + h(b₁D1 + b₂D0) (+ noise). Plain: η = 0 (σ_d = σ', no noise)."""
    s = [6.0, 2.2, 0.8]
    x0 = start(6, s[0])
    eta = ancestral_eta or 0.0
    noise = KeyedNoise(3)
    model = Plain(Dc)
    if ancestral_eta is None:
        out = lib_cfgpp.sample_res_multistep(model, x0, sig(*s))
    else:
        out = lib_cfgpp.sample_res_multistep_ancestral(model, x0, sig(*s), eta=eta, s_noise=0.9, noise_sampler=noise)
    (d0, u0), (d1, u1) = ancestral(s[0], s[1], eta), ancestral(s[1], s[2], eta)

    def noise_term(i, up):
        return 0.9 * up * noise.z(s[i], s[i + 1]) if ancestral_eta else 0
    x1 = x0 + (d0 - s[0]) * (x0 - Dc(x0, s[0])) / s[0] + noise_term(0, u0)
    h, b1, b2 = _res_coefficients(t_of(s[0]), t_of(d0), t_of(s[1]), t_of(d1))
    expected = math.exp(-h) * x1 + h * (b1 * Dc(x1, s[1]) + b2 * Dc(x0, s[0])) + noise_term(1, u1)
    euler = x1 + (d1 - s[1]) * (x1 - Dc(x1, s[1])) / s[1] + noise_term(1, u1)
    assert_hand(out, expected, euler)
    assert model.calls == s[:2]
    assert noise.calls == (pytest.approx([s[0], s[1], s[1], s[2]]) if ancestral_eta else [])


@pytest.mark.parametrize("ancestral_eta", [None, 0.6])
def test_res_multistep_cfgpp_two_steps_by_hand(ancestral_eta):
    """x1 = D_λ,0 + (σ_d0/σ0)(x0 − D_∅,0) (+ noise); x2 = D_λ,1 + e^{−h}(x1 − D_∅,1) + h·b₂·(D_∅,0 − D_λ,1) (+ noise).
    ComfyUI's multistep step, e^{−h}(x1 + D_λ,1 − D_∅,1) + h(b₁D_∅,1 + b₂D_∅,0), is told apart."""
    s = [6.0, 2.2, 0.8]
    x0 = start(7, s[0])
    eta = ancestral_eta or 0.0
    noise = KeyedNoise(4)
    if ancestral_eta is None:
        out, calls = cfgpp(lib_cfgpp.sample_res_multistep_cfg_pp, sig(*s), x0)
    else:
        out, calls = cfgpp(lib_cfgpp.sample_res_multistep_ancestral_cfg_pp, sig(*s), x0, eta=eta, s_noise=0.9,
                           noise_sampler=noise)
    (d0, u0), (d1, u1) = ancestral(s[0], s[1], eta), ancestral(s[1], s[2], eta)

    def noise_term(i, up):
        return 0.9 * up * noise.z(s[i], s[i + 1]) if ancestral_eta else 0
    x1 = guided(x0, s[0], LAM) + (d0 / s[0]) * (x0 - Du(x0, s[0])) + noise_term(0, u0)
    h, b1, b2 = _res_coefficients(t_of(s[0]), t_of(d0), t_of(s[1]), t_of(d1))
    g1, u_1, u_0 = guided(x1, s[1], LAM), Du(x1, s[1]), Du(x0, s[0])
    expected = g1 + math.exp(-h) * (x1 - u_1) + h * b2 * (u_0 - g1) + noise_term(1, u1)
    comfy = math.exp(-h) * (x1 + g1 - u_1) + h * (b1 * u_1 + b2 * u_0) + noise_term(1, u1)
    assert_hand(out, expected, comfy)
    assert calls == s[:2]


# ---------------------------------------------------------------- hand-written steps: gradient estimation

def test_gradient_estimation_base_and_cfgpp_two_steps_by_hand():
    """Base: d_i = (x_i − D_i)/σ_i; x1 = x0 + (σ1 − σ0)d0; x2 = x1 + (σ2 − σ1)d1 + (γ − 1)(σ2 − σ1)(d1 − d0).
    CFG++: d from D_∅; x1 = D_λ,0 + σ1·d0; x2 = D_λ,1 + σ2·d1 + (γ − 1)(σ2 − σ1)(d1 − d0). γ = 2."""
    s = [5.5, 2.0, 0.6]
    x0 = start(8, s[0])
    base = lib_cfgpp.sample_gradient_estimation(Plain(Dc), x0, sig(*s))
    d0 = (x0 - Dc(x0, s[0])) / s[0]
    x1 = x0 + (s[1] - s[0]) * d0
    d1 = (x1 - Dc(x1, s[1])) / s[1]
    euler = x1 + (s[2] - s[1]) * d1
    assert_hand(base, euler + (s[2] - s[1]) * (d1 - d0), euler)

    out, calls = cfgpp(lib_cfgpp.sample_gradient_estimation_cfg_pp, sig(*s), x0)
    d0 = (x0 - Du(x0, s[0])) / s[0]
    x1 = guided(x0, s[0], LAM) + s[1] * d0
    d1 = (x1 - Du(x1, s[1])) / s[1]
    g_d1 = (x1 - guided(x1, s[1], LAM)) / s[1]  # a guided direction in the correction instead
    expected = guided(x1, s[1], LAM) + s[2] * d1 + (s[2] - s[1]) * (d1 - d0)
    assert_hand(out, expected, guided(x1, s[1], LAM) + s[2] * d1 + (s[2] - s[1]) * (g_d1 - d0))
    assert calls == s[:2]


# ---------------------------------------------------------------- reductions to the base samplers

NEW = ["DPM++ SDE CFG++", "DPM++ 2M SDE CFG++", "DPM++ 3M SDE CFG++", "Heun CFG++", "DPM2 CFG++", "RES Multistep CFG++",
       "RES Multistep Ancestral CFG++", "Gradient Estimation CFG++"]
SCHEDULE = (14.6, 9.0, 5.1, 2.9, 1.5, 0.71, 0.3, 0.0)


def _noise_kwargs(definition, kind, x, sigmas, salt):
    if not (definition.ancestral or definition.brownian):
        return {}
    if kind == "brownian":  # a fresh tree per run, same seeds: the same Brownian path
        positive = sigmas[sigmas > 0]
        return {"noise_sampler": K.BrownianTreeNoiseSampler(x, positive.min(), positive.max(), seed=[salt, salt + 1])}
    gen = torch.Generator().manual_seed(salt)
    return {"noise_sampler": lambda a, b: torch.randn(x.shape, generator=gen, dtype=x.dtype)}


@pytest.mark.parametrize("label", NEW)
@pytest.mark.parametrize("noise", ["iid", "brownian"])
@pytest.mark.parametrize("eta,s_noise", [(1.0, 1.0), (0.5, 0.7), (0.0, 1.0)])
def test_new_samplers_equal_their_base_when_the_predictions_agree(label, noise, eta, s_noise):
    """λ = 0 (D_λ = D_∅) and D_c == D_∅ at λ = 0.7: the base sampler on D_∅ with the same noise sampler (the
    k-diffusion function, or ours for RES / gradient estimation), to float64 precision; eta / s_noise as given."""
    definition = registry.find(label)
    sigmas = sig(*SCHEDULE)
    x = start(9, SCHEDULE[0])
    kw = {"eta": eta, "s_noise": s_noise} if definition.ancestral or definition.brownian else {}
    base_fn = registry.base_function(definition, K)
    base = base_fn(Plain(), x, sigmas, **kw, **_noise_kwargs(definition, noise, x, sigmas, 5))
    zero = definition.function(AnalyticCFG(), x, sigmas, extra_args={"cond_scale": 0.0}, multiplier=1.0, **kw,
                               **_noise_kwargs(definition, noise, x, sigmas, 5))
    assert torch.allclose(zero, base, atol=1e-10, rtol=1e-10), (zero - base).abs().max()

    class Same(AnalyticCFG):
        d_cond = staticmethod(AnalyticCFG.d_uncond)
    same = definition.function(Same(), x, sigmas, extra_args={"cond_scale": LAM}, multiplier=1.0, **kw,
                               **_noise_kwargs(definition, noise, x, sigmas, 5))
    assert torch.allclose(same, base, atol=1e-10, rtol=1e-10), (same - base).abs().max()
    acting = definition.function(AnalyticCFG(), x, sigmas, extra_args={"cond_scale": LAM}, multiplier=1.0, **kw,
                                 **_noise_kwargs(definition, noise, x, sigmas, 5))
    assert (acting - base).abs().max() > 1e-3, "guidance acts: the comparison above is not vacuous"


def test_dpmpp_2m_sde_heun_solver_equals_its_base():
    """solver_type='heun' (the WebUI's "DPM++ 2M SDE Heun" passes it) at λ = 0 is k-diffusion's heun variant."""
    x = start(10, SCHEDULE[0])
    sigmas = sig(*SCHEDULE)
    definition = registry.find("DPM++ 2M SDE CFG++")
    kw = dict(eta=0.7, solver_type="heun")
    base = K.sample_dpmpp_2m_sde(Plain(), x, sigmas, **kw, **_noise_kwargs(definition, "brownian", x, sigmas, 3))
    ours = definition.function(AnalyticCFG(), x, sigmas, extra_args={"cond_scale": 0.0}, multiplier=1.0, **kw,
                               **_noise_kwargs(definition, "brownian", x, sigmas, 3))
    assert torch.allclose(ours, base, atol=1e-10, rtol=1e-10)
    with pytest.raises(ValueError, match="solver_type"):
        definition.function(AnalyticCFG(), x, sigmas, solver_type="euler", noise_sampler=lambda a, b: x)


def test_the_family_reduces_across_samplers():
    """DPM++ 2M SDE CFG++ at η = 0 is DPM++ 2M CFG++ (as the bases); RES ancestral (and its twin) at η = 0 is RES
    multistep; gradient estimation at γ = 1 is k-diffusion's Euler, and its twin Euler CFG++."""
    sigmas = sig(*SCHEDULE)
    x = start(11, SCHEDULE[0])
    def run(fn, **kw):
        return fn(AnalyticCFG(), x, sigmas, extra_args={"cond_scale": LAM}, multiplier=1.0, **kw)
    never = lambda a, b: pytest.fail("no noise at eta 0")  # noqa: E731
    assert torch.allclose(run(lib_cfgpp.sample_dpmpp_2m_sde_cfg_pp, eta=0.0, noise_sampler=never),
                          run(lib_cfgpp.sample_dpmpp_2m_cfg_pp), atol=1e-12)
    assert torch.allclose(run(lib_cfgpp.sample_res_multistep_ancestral_cfg_pp, eta=0.0, noise_sampler=never),
                          run(lib_cfgpp.sample_res_multistep_cfg_pp), atol=1e-12)
    plain = Plain(Dc)
    assert torch.allclose(lib_cfgpp.sample_res_multistep_ancestral(plain, x, sigmas, eta=0.0, noise_sampler=never),
                          lib_cfgpp.sample_res_multistep(plain, x, sigmas), atol=1e-12)
    assert torch.allclose(lib_cfgpp.sample_gradient_estimation(plain, x, sigmas, ge_gamma=1.0),
                          K.sample_euler(plain, x, sigmas), atol=1e-12)
    assert torch.allclose(run(lib_cfgpp.sample_gradient_estimation_cfg_pp, ge_gamma=1.0),
                          run(lib_cfgpp.sample_euler_cfg_pp), atol=1e-12)
    assert not torch.allclose(lib_cfgpp.sample_gradient_estimation(plain, x, sigmas), K.sample_euler(plain, x, sigmas),
                              atol=1e-3)


@pytest.mark.parametrize("label", [d.label for d in registry.SAMPLERS if d.brownian])
def test_sde_without_a_noise_sampler_builds_the_bases_brownian_tree(label, monkeypatch):
    """No noise sampler given: a Brownian tree over the schedule's positive sigmas with a seed drawn from torch's
    global RNG, as the base builds it, so under the same torch seed the twin at λ = 0 equals the base."""
    monkeypatch.setattr(K, "torch", torch)  # a WebUI-level test may leave the host's seeded stand-in there
    definition = registry.find(label)
    sigmas = sig(*SCHEDULE)
    x = start(12, SCHEDULE[0])
    torch.manual_seed(77)
    base = registry.base_function(definition, K)(Plain(), x, sigmas)
    torch.manual_seed(77)
    ours = definition.function(AnalyticCFG(), x, sigmas, extra_args={"cond_scale": 0.0}, multiplier=1.0)
    torch.manual_seed(78)
    other = definition.function(AnalyticCFG(), x, sigmas, extra_args={"cond_scale": 0.0}, multiplier=1.0)
    assert torch.allclose(ours, base, atol=1e-10) and (other - base).abs().max() > 1e-3


def test_core_brownian_tree_equals_k_diffusions():
    """lib_cfgpp.BrownianTreeNoise (ours, on torchsde) draws what k-diffusion's BrownianTreeNoiseSampler draws for
    the same seeds: per image with a list of seeds (row b from seed b, whatever the batch), one tree with one seed."""
    x = start(13)
    lo, hi = torch.tensor(0.03), torch.tensor(14.6)
    for seed in ([3, 4], 5):
        ours = lib_cfgpp.BrownianTreeNoise(x, lo, hi, seed=seed)
        theirs = K.BrownianTreeNoiseSampler(x, lo, hi, seed=seed)
        for a, b in [(14.6, 9.0), (9.0, 3.0), (3.0, 9.0), (0.5, 0.03)]:
            assert torch.allclose(ours(torch.tensor(a), torch.tensor(b)), theirs(torch.tensor(a), torch.tensor(b)),
                                  atol=1e-6)
    alone = lib_cfgpp.BrownianTreeNoise(x[1:], lo, hi, seed=[4])(torch.tensor(9.0), torch.tensor(3.0))
    assert torch.allclose(lib_cfgpp.BrownianTreeNoise(x, lo, hi, seed=[3, 4])(torch.tensor(9.0), torch.tensor(3.0))[1:],
                          alone)
    with pytest.raises(ValueError, match="seeds"):
        lib_cfgpp.BrownianTreeNoise(x, lo, hi, seed=[1, 2, 3])


def test_readme_lists_every_cfgpp_sampler_with_when_to_use_it():
    """README's CFG++ table: one row per CFG++ sampler of the registry (and the WebUI's DDIM CFG++), each with its
    model calls per step (2 exactly for the second-order ones) and a non-empty "when to use it"."""
    import os
    readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md"),
                  encoding="utf-8").read()
    rows = {cells[0]: cells[1:] for cells in (
        [c.strip() for c in line.strip().strip("|").split("|")] for line in readme.splitlines()
        if line.startswith("| ") and "CFG++" in line.split("|")[1])}
    second_order = {"DPM++ 2S a CFG++", "DPM++ SDE CFG++", "Heun CFG++", "DPM2 CFG++"}
    for definition in registry.SAMPLERS:
        calls, when = rows[definition.label]
        assert calls == ("2" if definition.label in second_order else "1") and len(when) > 20, definition.label
    assert "DDIM CFG++ (built into the WebUI)" in rows
