"""Host double of modules.sd_hijack_unet's `th`: the WebUI replaces `torch` inside ldm's openaimodel with a
stand-in whose `cat` resizes the upsampled tensor (nearest) to the skip connection's size, which is what makes
sizes that are multiples of 8 px (not 64) work. `install()` does what sd_hijack does at start-up."""
import torch


class TorchHijackForUnet:
    def __getattr__(self, item):
        if item == "cat":
            return self.cat
        if hasattr(torch, item):
            return getattr(torch, item)
        raise AttributeError(item)

    def cat(self, tensors, *args, **kwargs):
        if len(tensors) == 2:
            a, b = tensors
            if a.shape[-2:] != b.shape[-2:]:
                a = torch.nn.functional.interpolate(a, b.shape[-2:], mode="nearest")
            tensors = (a, b)
        return torch.cat(tensors, *args, **kwargs)


th = TorchHijackForUnet()


def install():
    import ldm.modules.diffusionmodules.openaimodel as openaimodel
    openaimodel.th = th
