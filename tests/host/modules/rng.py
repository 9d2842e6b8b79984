"""Host double of modules.rng.ImageRNG with `randn_source = CPU`: one torch.Generator per seed; the first
`next()` is the initial noise, later calls (ancestral samplers via TorchHijack) continue each seed's stream."""
import torch

from . import shared


class ImageRNG:
    def __init__(self, shape, seeds, subseeds=None, subseed_strength=0.0, seed_resize_from_h=0, seed_resize_from_w=0):
        self.shape = tuple(map(int, shape))
        self.seeds = seeds
        self.generators = [torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds]
        self.is_first = True

    def next(self):
        xs = [torch.randn(self.shape, generator=g) for g in self.generators]
        if self.is_first:
            self.is_first = False
            delta = shared.opts.eta_noise_seed_delta or 0
            if delta:
                self.generators = [torch.Generator("cpu").manual_seed(int(s) + delta) for s in self.seeds]
        return torch.stack(xs).to(shared.device)


def randn_local(seed, shape):
    """v1.10.1 `rng.randn_local` (CPU source): the first normals of a fresh generator seeded with `seed`, without
    touching the global RNG. v1.10.1 also publishes it as `devices.randn_local` (used by the Brownian tree)."""
    generator = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randn(shape, generator=generator).to(shared.device)


from . import devices  # noqa: E402

devices.randn_local = randn_local
