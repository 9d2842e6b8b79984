"""Import the real `k_diffusion` package without torchvision, clip or clean-fid.

k-diffusion's package ``__init__`` imports its evaluation helpers, which need torchvision/clip/cleanfid;
none of them has a CPU wheel that works beside torch 2.13 here. Empty stand-ins are registered only for
the duration of the import and removed afterwards, so other packages (transformers, diffusers) never
mistake them for the real ones. The sampling and denoiser code we test does not touch them.
"""
import sys
import types

_STUBS = ("clip", "cleanfid", "cleanfid.inception_torchscript", "torchvision",
          "torchvision.transforms", "torchvision.transforms.functional")


def import_k_diffusion():
    if "k_diffusion" in sys.modules:
        return sys.modules["k_diffusion"]
    added = []
    for name in _STUBS:
        if name not in sys.modules:
            sys.modules[name] = types.ModuleType(name)
            added.append(name)
    sys.modules["cleanfid.inception_torchscript"].InceptionV3W = object
    try:
        import k_diffusion
        import k_diffusion.sampling  # noqa: F401
        import k_diffusion.external  # noqa: F401
    finally:
        for name in added:
            sys.modules.pop(name, None)
    return k_diffusion
