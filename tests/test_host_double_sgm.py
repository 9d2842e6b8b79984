"""The tiny SDXL model behaves like the sgm UNetModel the WebUI runs for SDXL (tests/support/sgm_emulation.py,
checked against Stability-AI/generative-models at the commit WebUI v1.10.1 pins), so a core that would break on
sgm fails here too."""
import pytest
import torch

import lib_hidiffusion as H
from support.sgm_emulation import BasicTransformerBlock, CrossAttention, SpatialTransformer
from support.tiny_models import make_context, make_ldm, make_unet


def _attn1_calls(unet):
    calls = []
    handles = [m.attn1.register_forward_pre_hook(lambda mod, args, kwargs: calls.append(dict(kwargs)), with_kwargs=True)
               for m in unet.modules() if isinstance(m, BasicTransformerBlock)]
    return calls, handles


def test_sdxl_blocks_have_sgm_behaviour_and_the_same_names():
    unet = make_unet("sdxl")
    st = unet.input_blocks[4][1]
    assert type(st) is SpatialTransformer and type(st.transformer_blocks[0]) is BasicTransformerBlock
    assert type(st.transformer_blocks[0].attn1) is CrossAttention
    assert {type(m).__name__ for m in (st, st.transformer_blocks[0], st.transformer_blocks[0].attn1)} == {
        "SpatialTransformer", "BasicTransformerBlock", "CrossAttention"}, "cores find modules by class name"
    assert type(make_unet("sd15").input_blocks[1][1]).__name__ == "SpatialTransformer"
    assert type(make_unet("sd15").input_blocks[1][1]) is not SpatialTransformer, "SD 1.x stays ldm"


def test_sgm_forward_takes_one_context_and_passes_attn1_the_extra_keywords():
    """sgm SpatialTransformer.forward: a tensor context serves every block (ldm at cf1d67a needs a list of depth);
    sgm BasicTransformerBlock._forward calls attn1(x, context=None, additional_tokens=None,
    n_times_crossframe_attn_in_self=0)."""
    unet = make_unet("sdxl")
    x, t, c = torch.randn(1, 4, 16, 16), torch.tensor([500.0]), make_context("sdxl")
    calls, handles = _attn1_calls(unet)
    try:
        with torch.no_grad():
            one = unet(x, t, context=c)
            listed = unet(x, t, context=[c, c])
    finally:
        for h in handles:
            h.remove()
    assert torch.equal(one, listed)
    assert calls and all(k == {"context": None, "additional_tokens": None, "n_times_crossframe_attn_in_self": 0}
                         for k in calls)


def test_a_fixed_signature_attn1_wrapper_breaks_on_sgm_as_it_would_in_the_webui():
    def install_naive_wrapper(unet):
        for m in unet.modules():
            if type(m).__name__ == "BasicTransformerBlock":
                original = m.attn1.forward
                m.attn1.forward = lambda x, context=None, mask=None, original=original: original(x, context, mask)

    x, t = torch.randn(1, 4, 16, 16), torch.tensor([500.0])
    sd15 = make_unet("sd15")
    install_naive_wrapper(sd15)
    with torch.no_grad():
        sd15(x, t, context=make_context("sd15"))  # ldm passes only `context`
        sdxl = make_unet("sdxl")
        install_naive_wrapper(sdxl)
        with pytest.raises(TypeError, match="additional_tokens"):
            sdxl(x, t, context=make_context("sdxl"))


def test_hidiffusion_windows_the_sgm_blocks():
    unet = make_unet("sdxl")
    x, t, c = torch.randn(1, 4, 32, 32), torch.tensor([900.0]), make_context("sdxl")
    with torch.no_grad():
        plain = unet(x, t, context=c)
        state = H.HiDiffusionState()
        H.apply(unet, H.make_config(unet, (32, 32)), state)
        batches = []
        handles = [m.attn1.to_q.register_forward_pre_hook(lambda mod, args: batches.append(args[0].shape[0]))
                   for m in unet.modules() if isinstance(m, BasicTransformerBlock)]
        state.arm(seed=1)
        state.set_step(0, 10)
        patched = unet(x, t, context=c)
        H.remove(unet)
        for h in handles:
            h.remove()
        assert torch.equal(unet(x, t, context=c), plain)
    assert batches.count(4) == 10, "MSW-MSA windowed attn1 of the 10 sgm blocks at the windowed levels"
    assert not torch.equal(patched, plain) and torch.isfinite(patched).all()


def test_tiny_sdxl_model_calls_the_unet_as_the_webui_sgm_wrapper():
    """sd_models_xl.apply_model -> sgm OpenAIWrapper.forward: unet(x, timesteps=t, context=crossattn, y=vector);
    sgm's label_emb for 'sequential' is Sequential(Sequential(Linear, SiLU, Linear))."""
    model = make_ldm("sdxl")
    unet = model.model.diffusion_model
    assert {"label_emb.0.0.weight", "label_emb.0.2.weight"} <= set(unet.state_dict())
    seen = []
    handle = unet.register_forward_pre_hook(lambda m, args, kwargs: seen.append((len(args), sorted(kwargs))),
                                            with_kwargs=True)
    try:
        with torch.no_grad():
            model.apply_model(torch.randn(1, 4, 8, 8), torch.tensor([10.0]),
                              {"crossattn": make_context("sdxl"), "vector": torch.randn(1, 64), "c_concat": []})
    finally:
        handle.remove()
    assert seen == [(1, ["context", "timesteps", "y"])]
