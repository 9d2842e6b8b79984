"""Host double of the built-in Lora extension's `networks` module (extensions-builtin/Lora/networks.py of v1.10.1;
the WebUI puts that folder on sys.path, so other code reaches it as `import networks`).

Reproduced, with the same names and effects:
- `network_apply_weights` (called from the patched `Linear`/`Conv2d` forward, as lora_patches.LoraPatches installs):
  lazily backs up the weight/bias to the CPU (`store_weights_backup`: `weight.to(cpu, copy=True)`), restores from the
  backup when the wanted set of networks changed, then adds each network's delta under `torch.no_grad()`.
- `network_restore_weights_from_backup` / `restore_weights_backup`: `getattr(module, field).copy_(backup)` WITHOUT
  `no_grad`, as in v1.10.1: the WebUI only calls it during sampling (grad off); called with grad on, on a parameter
  that requires grad, torch raises "a leaf Variable that requires grad is being used in an in-place operation".
- `network_reset_cached_weight`, the `_load_from_state_dict` patches, `assign_network_names_to_compvis_modules`
  (UNet modules only: the tiny models have no text encoder module).
- `load_networks(names, te_multipliers, unet_multipliers, dyn_dims)`: names are looked up in `available_networks`
  (in-memory `Network`s built by `full_network`, the "diff" module type of network_full.py) instead of files.
Not reproduced: the `lora_functional` path, MultiheadAttention/GroupNorm/LayerNorm layers, embeddings, fp16 caches.
`install()` / `uninstall()` put the class-level patches on and off (the WebUI keeps them on for its lifetime).
"""
from __future__ import annotations

import torch

from modules import devices, shared

loaded_networks: list = []
available_networks: dict = {}
_originals: dict = {}


class NetworkModuleFull:
    """network_full.NetworkModuleFull: a whole weight difference ("diff"), times the network's unet multiplier."""

    def __init__(self, net, diff: torch.Tensor):
        self.network, self.weight = net, diff

    def calc_updown(self, orig_weight):
        updown = self.weight.to(orig_weight.device).reshape(orig_weight.shape)
        return updown * self.network.unet_multiplier, None


class Network:
    def __init__(self, name: str):
        self.name = name
        self.te_multiplier = self.unet_multiplier = self.dyn_dim = 1.0
        self.modules: dict = {}


def full_network(name: str, diffs: dict) -> Network:
    """A network with a "diff" module per layer name (`diffusion_model_input_blocks_1_1_proj_in`, ...); registered
    in `available_networks`."""
    net = Network(name)
    net.modules = {layer: NetworkModuleFull(net, diff) for layer, diff in diffs.items()}
    available_networks[name] = net
    return net


def assign_network_names_to_compvis_modules(sd_model):
    mapping = {}
    for name, module in sd_model.model.named_modules():
        network_name = name.replace(".", "_")
        mapping[network_name] = module
        module.network_layer_name = network_name
    sd_model.network_layer_mapping = mapping


def load_networks(names, te_multipliers=None, unet_multipliers=None, dyn_dims=None):
    """As v1.10.1's load_networks for networks found: `loaded_networks` becomes `names` with their multipliers.
    Weights are not touched here: each layer applies the new set on its next forward."""
    loaded_networks.clear()
    if names and not hasattr(shared.sd_model, "network_layer_mapping"):  # load_network does this on first use
        assign_network_names_to_compvis_modules(shared.sd_model)
    for i, name in enumerate(names):
        net = available_networks[name]
        net.te_multiplier = te_multipliers[i] if te_multipliers else 1.0
        net.unet_multiplier = unet_multipliers[i] if unet_multipliers else 1.0
        net.dyn_dim = dyn_dims[i] if dyn_dims else 1.0
        loaded_networks.append(net)


def store_weights_backup(weight):
    if weight is None:
        return None
    return weight.to(devices.cpu, copy=True)


def restore_weights_backup(obj, field, weight):
    if weight is None:
        setattr(obj, field, None)
        return
    getattr(obj, field).copy_(weight)


def network_restore_weights_from_backup(self):
    weights_backup = getattr(self, "network_weights_backup", None)
    bias_backup = getattr(self, "network_bias_backup", None)
    if weights_backup is None and bias_backup is None:
        return
    if weights_backup is not None:
        restore_weights_backup(self, "weight", weights_backup)
    restore_weights_backup(self, "bias", bias_backup)


def network_apply_weights(self):
    network_layer_name = getattr(self, "network_layer_name", None)
    if network_layer_name is None:
        return
    current_names = getattr(self, "network_current_names", ())
    wanted_names = tuple((x.name, x.te_multiplier, x.unet_multiplier, x.dyn_dim) for x in loaded_networks)

    weights_backup = getattr(self, "network_weights_backup", None)
    if weights_backup is None and wanted_names != ():
        if current_names != ():
            raise RuntimeError(f"{network_layer_name} - no backup weights found and current weights are not unchanged")
        self.network_weights_backup = store_weights_backup(self.weight)

    bias_backup = getattr(self, "network_bias_backup", None)
    if bias_backup is None and wanted_names != ():
        bias_backup = store_weights_backup(self.bias) if getattr(self, "bias", None) is not None else None
        if bias_backup is not None and current_names != ():
            raise RuntimeError("no backup bias found and current bias are not unchanged")
        self.network_bias_backup = bias_backup

    if current_names != wanted_names:
        network_restore_weights_from_backup(self)
        for net in loaded_networks:
            module = net.modules.get(network_layer_name)
            if module is None:
                continue
            with torch.no_grad():
                updown, _ = module.calc_updown(self.weight)
                self.weight.copy_((self.weight.to(dtype=updown.dtype) + updown).to(dtype=self.weight.dtype))
        self.network_current_names = wanted_names


def network_reset_cached_weight(self):
    self.network_current_names = ()
    self.network_weights_backup = None
    self.network_bias_backup = None


def _forward(kind):
    def forward(self, input):
        network_apply_weights(self)
        return _originals[(kind, "forward")](self, input)
    return forward


def _load_from_state_dict(kind):
    def load(self, *args, **kwargs):
        network_reset_cached_weight(self)
        return _originals[(kind, "_load_from_state_dict")](self, *args, **kwargs)
    return load


def install():
    """lora_patches.LoraPatches: patch Linear/Conv2d `forward` and `_load_from_state_dict` at class level."""
    for kind in (torch.nn.Linear, torch.nn.Conv2d):
        for field, make in (("forward", _forward), ("_load_from_state_dict", _load_from_state_dict)):
            if (kind, field) not in _originals:
                _originals[(kind, field)] = getattr(kind, field)
                setattr(kind, field, make(kind))


def uninstall():
    """LoraPatches.undo, and forget every network (the tests' clean slate)."""
    for (kind, field), original in list(_originals.items()):
        setattr(kind, field, original)
        del _originals[(kind, field)]
    loaded_networks.clear()
    available_networks.clear()
