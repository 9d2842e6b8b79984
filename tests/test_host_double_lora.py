"""The built-in Lora extension's stand-in (tests/host/networks.py) behaves like extensions-builtin/Lora/networks.py
of WebUI v1.10.1: lazy apply on forward with a CPU backup, restore when the set changes, no no_grad of its own."""
import networks
import pytest
import torch

from modules import script_callbacks, scripts, shared

from support.generation import load_model, reset_host, txt2img

LAYER = "diffusion_model_input_blocks_1_1_proj_in"


@pytest.fixture(autouse=True)
def _host():
    reset_host()
    load_model("sd15")
    networks.install()
    yield
    networks.uninstall()
    script_callbacks.clear_callbacks()
    reset_host()


def _layer():
    return shared.sd_model.model.diffusion_model.input_blocks[1][1].proj_in


def _diff(seed=1):
    return torch.randn(_layer().weight.shape, generator=torch.Generator().manual_seed(seed)) * 0.1


def test_network_applies_lazily_on_forward_and_restores_when_the_set_changes():
    """network_apply_weights: backup (CPU copy) on first use, weight = backup + diff * multiplier; a changed set
    (other multiplier, or none) starts again from the backup."""
    layer = _layer()
    base = layer.weight.detach().clone()
    diff = _diff()
    networks.full_network("style", {LAYER: diff})
    networks.load_networks(["style"], unet_multipliers=[0.5])
    assert torch.equal(layer.weight, base), "nothing happens before a forward"
    plain = txt2img(steps=2).latents
    torch.testing.assert_close(layer.weight.detach(), base + 0.5 * diff, rtol=0, atol=1e-7)
    assert torch.equal(layer.network_weights_backup, base) and layer.network_weights_backup.device.type == "cpu"
    assert layer.network_current_names == (("style", 1.0, 0.5, 1.0),)

    networks.load_networks(["style"], unet_multipliers=[1.0])
    txt2img(steps=2)
    torch.testing.assert_close(layer.weight.detach(), base + diff, rtol=0, atol=1e-7)

    networks.load_networks([])
    without = txt2img(steps=2).latents
    assert torch.equal(layer.weight, base) and layer.network_current_names == ()
    assert layer.network_weights_backup is not None, "the backup stays once a network was used"
    assert not torch.equal(plain, without)


def test_restore_from_backup_has_no_no_grad_of_its_own():
    """network_restore_weights_from_backup -> restore_weights_backup: `getattr(obj, field).copy_(weight)` with no
    `torch.no_grad()`; fine while sampling (grad off), an error on a parameter that requires grad otherwise."""
    layer = _layer()
    networks.full_network("style", {LAYER: _diff()})
    networks.load_networks(["style"])
    txt2img(steps=2)
    assert layer.weight.requires_grad
    with torch.enable_grad(), pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        networks.network_restore_weights_from_backup(layer)
    with torch.no_grad():
        networks.network_restore_weights_from_backup(layer)
    assert torch.equal(layer.weight, layer.network_weights_backup)


class GradProbe(scripts.Script):
    """Records whether autograd is on in `process` and in `process_before_every_sampling`."""

    def __init__(self):
        self.seen = {}

    def title(self):
        return "Grad probe"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def process(self, p, *args):
        self.seen["process"] = torch.is_grad_enabled()

    def process_before_every_sampling(self, p, *args, **kwargs):
        self.seen["sampling"] = torch.is_grad_enabled()


def test_script_hooks_run_with_grad_on_and_sampling_without():
    """processing.process_images of v1.10.1 runs in a request thread (grad on); process_images_inner puts sampling
    under torch.no_grad(). Holds even when grad was switched off globally before (as a test module may do)."""
    probe = GradProbe()
    previous = torch.is_grad_enabled()
    torch.set_grad_enabled(False)
    try:
        txt2img(script_list=[probe], script_args=[], arg_counts=[0], steps=2)
    finally:
        torch.set_grad_enabled(previous)
    assert probe.seen == {"process": True, "sampling": False}


def test_load_state_dict_drops_the_cached_backup():
    """network_Conv2d/Linear_load_state_dict: network_reset_cached_weight, then the original loader."""
    layer = _layer()
    networks.full_network("style", {LAYER: _diff()})
    networks.load_networks(["style"])
    txt2img(steps=2)
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    layer.load_state_dict(state)
    assert layer.network_weights_backup is None and layer.network_current_names == ()
