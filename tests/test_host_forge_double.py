"""The Forge-family double (tests/host_forge) itself: each behaviour the suite's Forge route relies on or must not
be fooled by, against reForge's source (the function followed is named in each test)."""
import pytest
import torch

from modules import shared

from host_forge.install import ForgeDouble
from host_forge.sampling import sampling_function
from support.generation import reset_host, txt2img
from support.hidiffusion_webui_probe import load_fast_sd15


@pytest.fixture
def forge(monkeypatch):
    reset_host()
    load_fast_sd15()
    double = ForgeDouble(monkeypatch)
    yield double
    double.close()
    reset_host()


def _calls(module, record, name):
    return module.register_forward_pre_hook(lambda m, args: record.append(name))


def test_blocks_run_through_forward_timestep_embed_not_their_forward(forge):
    """openaimodel.UNetModel._forward / forward_timestep_embed: an instance forward on an input or output block
    never runs; the layers inside run through __call__ (Upsample with output_shape=), and the input / output block
    patches see ("input", i) / ("output", i) in order, the output patch before the block joins its skip."""
    unet, seen, called = forge.unet, [], []
    for block in (unet.input_blocks[4], unet.output_blocks[7]):
        block.forward = lambda *a, **k: called.append("block forward")
    hooks = [_calls(unet.input_blocks[3][0], called, "Downsample"),
             _calls(unet.input_blocks[1][1].transformer_blocks[0].attn1, called, "attn1")]
    shapes = []
    up = unet.output_blocks[8][-1]
    hooks.append(up.register_forward_pre_hook(lambda m, a, k: shapes.append(k.get("output_shape")), with_kwargs=True))
    forge.patcher.set_model_input_block_patch(lambda h, to: seen.append(to["block"]) or h)
    forge.patcher.set_model_output_block_patch(lambda h, hsp, to: (seen.append(to["block"]), (h, hsp))[1])
    try:
        txt2img(steps=1)
    finally:
        for hook in hooks:
            hook.remove()
    assert "block forward" not in called and {"Downsample", "attn1"} <= set(called)
    # one step = one model call (cond and uncond batched): every input block, then every output block, in order
    assert seen == [("input", i) for i in range(12)] + [("output", i) for i in range(12)]
    assert shapes and all(s is not None and tuple(s[2:]) == (8, 8) for s in shapes)  # skip of input block 2 (64 px)


def test_sampling_function_returns_the_guided_prediction(forge):
    """samplers.sampling_function / cfg_function and CFGDenoiser.forward: the denoiser returns
    D_∅ + s·(D_c − D_∅) computed from the model's own cond and uncond outputs; last_noise_uncond holds that
    guided prediction, and cond_scale_miltiplier changes nothing (combine_denoised only copies)."""
    captured = {}

    def post_cfg(args):
        captured.update(args)
        return args["denoised"]
    forge.patcher.set_model_sampler_post_cfg_function(post_cfg)
    from modules import sd_samplers_kdiffusion
    seen = []
    original = sd_samplers_kdiffusion.CFGDenoiserKDiffusion.__call__

    def spy(self, *args, **kwargs):
        self.need_last_noise_uncond = True
        self.cond_scale_miltiplier = 0.25
        out = original(self, *args, **kwargs)
        seen.append((out, self.last_noise_uncond))
        return out
    sd_samplers_kdiffusion.CFGDenoiserKDiffusion.__call__ = spy
    try:
        txt2img(steps=1, cfg_scale=5.0)
    finally:
        del sd_samplers_kdiffusion.CFGDenoiserKDiffusion.__call__
    (out, last), = seen
    cond, uncond = captured["cond_denoised"], captured["uncond_denoised"]
    assert not torch.allclose(cond, uncond)
    torch.testing.assert_close(out, uncond + 5.0 * (cond - uncond))  # multiplier 0.25 ignored
    assert torch.equal(last, out)


def test_cfg1_optimization_and_skipped_uncond(forge):
    """samplers.sampling_function: at CFG 1 the uncond pass is dropped (post-CFG sees uncond None and a zero
    uncond_denoised) unless disable_cfg1_optimization; model_patcher.set_model_options_post_cfg_function sets it."""
    model, x, sigma = forge.patcher.model, torch.randn(1, 4, 16, 16), torch.tensor([3.0])
    cond = [{"model_conds": {"c_crossattn": torch.randn(1, 77, 16)}}]
    uncond = [{"model_conds": {"c_crossattn": torch.randn(1, 77, 16)}}]
    for disable, expect_uncond in ((False, False), (True, True)):
        seen = {}
        options = {"transformer_options": {}, "sampler_post_cfg_function": [lambda a: seen.update(a) or a["denoised"]]}
        if disable:
            options["disable_cfg1_optimization"] = True
        out = sampling_function(model, x, sigma, uncond, cond, 1.0, options)
        assert (seen["uncond"] is not None) == expect_uncond
        assert bool(seen["uncond_denoised"].abs().sum() > 0) == expect_uncond
        torch.testing.assert_close(out, seen["cond_denoised"])


def test_c_concat_only_when_shapes_match(forge):
    """CFGDenoiser.forward: the image conditioning (or extra_concat_condition) becomes c_concat only when its batch
    and spatial size equal x's; otherwise it is dropped without a word."""
    got = []
    real = forge.patcher.model.apply_model
    forge.patcher.model.apply_model = lambda x, t, **c: got.append(c.get("c_concat")) or real(x, t, **{
        k: v for k, v in c.items() if k != "c_concat"})
    try:
        forge.patcher.extra_concat_condition = torch.zeros(1, 4, 8, 8)
        txt2img(steps=1)
        forge.patcher.extra_concat_condition = torch.zeros(1, 4, 10, 8)  # e.g. built before a hires crop
        txt2img(steps=1)
    finally:
        forge.patcher.extra_concat_condition = None
        del forge.patcher.model.apply_model
    assert got[0] is not None and got[0].shape == (2, 4, 8, 8)
    assert got[1] is None


def test_patcher_clone_attn1_patches_and_replace(forge):
    """model_patcher.ModelPatcher / unet_patcher.UnetPatcher.clone: a clone shares the model and deep-copies the
    options (patches on it leave the original alone); attention.BasicTransformerBlock: an attn1 patch sees
    (n, context, value) and attn1 still runs; an attn1 replace patch keyed ("input", 1) calls to_q/to_k/to_v and
    the patch, never attn1's forward."""
    clone = forge.patcher.clone()
    assert clone.model is forge.patcher.model and clone.parent is forge.patcher
    patched, replaced, attn1_ran = [], [], []
    clone.set_model_attn1_patch(lambda n, c, v, extra: (patched.append(extra["block"]), (n, c, v))[1])
    clone.set_model_attn1_replace(lambda q, k, v, extra: replaced.append(extra["block"]) or q, "input", 1)
    assert forge.patcher.model_options == {"transformer_options": {}}
    attn1 = forge.unet.input_blocks[1][1].transformer_blocks[0].attn1
    hook = _calls(attn1, attn1_ran, "attn1")
    try:
        forge.model.forge_objects_after_applying_lora.unet = clone
        forge.reset_forge_objects()  # what processing does before the pass (the double does it in the script hook)
        txt2img(steps=1)
    finally:
        hook.remove()
    assert ("input", 1) in patched and ("input", 2) in patched
    assert replaced == [("input", 1)] and not attn1_ran


def test_forge_objects_reset_before_every_sampling_pass(forge):
    """processing.py: sd_model.forge_objects = forge_objects_after_applying_lora.shallow_copy() right before every
    process_before_every_sampling (first pass and hires pass), so a patcher assigned there lives for one pass."""
    from modules import scripts

    class Assigns(scripts.Script):
        def __init__(self):
            self.seen = []

        def title(self):
            return "assigns"

        def show(self, is_img2img):
            return scripts.AlwaysVisible

        def process_before_every_sampling(self, p, *args, **kwargs):
            objects = shared.sd_model.forge_objects
            self.seen.append((objects.unet, objects is shared.sd_model.forge_objects_after_applying_lora))
            objects.unet = objects.unet.clone()

    script = Assigns()
    txt2img([script], [], arg_counts=[0], enable_hr=True, hr_scale=1.5, steps=2)
    assert [unet for unet, _ in script.seen] == [forge.patcher, forge.patcher]
    assert not any(same for _, same in script.seen)
