"""IC-Light with the WebUI's built-in LoRA (the host double's stand-in follows extensions-builtin/Lora/networks.py of
v1.10.1): LoRA used before IC-Light, LoRA strength changed between IC-Light requests, LoRA alone afterwards."""
import networks
import pytest
import torch

from modules import shared

from support.generation import load_model, txt2img
from support.iclight_webui import fc_on, folder, generate, host, script  # noqa: F401 (pytest fixtures)

LAYERS = {key: "diffusion_model_" + key.replace(".", "_")  # LoRA's layer names (assign_network_names_to_compvis_modules)
          for key in ("input_blocks.1.1.proj_in",  # a Conv2d with bias
                      "input_blocks.1.1.transformer_blocks.0.attn2.to_k")}  # a Linear without


@pytest.fixture(autouse=True)
def lora():
    networks.install()
    yield
    networks.uninstall()


def _modules():
    unet = shared.sd_model.model.diffusion_model
    return {key: unet.get_submodule(key) for key in LAYERS}


def _register_style():
    diffs = {}
    for key, module in _modules().items():
        gen = torch.Generator().manual_seed(len(key))
        diffs[LAYERS[key]] = torch.randn(module.weight.shape, generator=gen) * 0.1
    networks.full_network("style", diffs)
    return {key: diffs[name] for key, name in LAYERS.items()}


class WeightsSeen:
    """The weights each LoRA'd layer had when it ran (after LoRA's lazy apply), first call of a generation."""

    def __init__(self):
        self.seen = {}
        self.handles = [m.register_forward_hook(self._hook(k)) for k, m in _modules().items()]

    def _hook(self, key):
        def hook(module, args, output):
            self.seen.setdefault(key, module.weight.detach().clone())
        return hook

    def __enter__(self):
        return self.seen

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def _offsets(script, folder):
    offset = script.MERGER.open(folder.fc)
    with offset.reader() as get:
        return {key: get(key + ".weight") for key in LAYERS}


def test_iclight_after_lora_merges_under_lora_and_follows_its_strength(script, folder):
    """Before the fix the process hook restored LoRA's backups with grad on: 'a leaf Variable that requires grad is
    being used in an in-place operation', every IC-Light request failed once any LoRA had been used."""
    base = {k: m.weight.detach().clone() for k, m in _modules().items()}
    diffs = _register_style()
    offsets = _offsets(script, folder)

    networks.load_networks(["style"], unet_multipliers=[0.5])
    generate(script, {"enabled": False})  # LoRA alone first: LoRA now holds backups
    merges = script.MERGER.merge_count
    for strength in (0.5, 1.0, 0.25):
        networks.load_networks(["style"], unet_multipliers=[strength])
        with WeightsSeen() as seen:
            generate(script, fc_on())
        for key in LAYERS:
            torch.testing.assert_close(seen[key], base[key] + offsets[key] + strength * diffs[key], rtol=0, atol=1e-6)
    assert script.MERGER.merge_count == merges + 1, "LoRA's deltas are not mistaken for a broken merge"

    networks.load_networks([])
    generate(script, fc_on())
    for key, module in _modules().items():
        torch.testing.assert_close(module.weight.detach(), base[key] + offsets[key], rtol=0, atol=1e-6)


def test_lora_alone_after_iclight_is_bit_identical_to_never_using_iclight(script):
    fresh = load_model("sd15")
    base = {k: m.weight.detach().clone() for k, m in _modules().items()}
    _register_style()
    networks.load_networks(["style"], unet_multipliers=[0.8])
    never = txt2img(seed=3, steps=3).latents
    networks.uninstall()

    networks.install()
    load_model("sd15")
    _register_style()
    networks.load_networks(["style"], unet_multipliers=[0.8])
    generate(script, {"enabled": False})
    generate(script, fc_on())
    networks.load_networks(["style"], unet_multipliers=[0.3])
    generate(script, fc_on())
    networks.load_networks(["style"], unet_multipliers=[0.8])
    after = generate(script, {"enabled": False}, seed=3)
    assert torch.equal(after.latents, never)
    networks.load_networks([])
    generate(script, {"enabled": False})
    for key, module in _modules().items():
        assert torch.equal(module.weight, base[key]), key
    assert fresh is not shared.sd_model
