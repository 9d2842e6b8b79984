"""A deterministic stand-in for the WebUI's CLIP text encoder, chunked as v1.10.1 `sd_hijack_clip` chunks prompts.

One word (whitespace-separated) counts as one token. The WebUI splits a prompt into chunks of 75 tokens
(`chunk_length`), encodes each chunk as 77 tokens (start + 75 + end) and concatenates the chunks
(`FrozenCLIPEmbedderWithCustomWordsBase.forward`: `torch.hstack(zs)`), so a prompt of up to 75 words gives
[77, C], 76-150 words give [154, C], and so on; an empty prompt is one chunk. Within one call, every text is
padded to the call's largest chunk count with the empty chunk (as `forward` does).

Values: each chunk is `_embed(chunk)` (a seeded N(0, 0.25) [77, C] from the crc32 of its words joined by one
space), so whitespace does not matter and a short text's value is that of its one chunk. SDXL (`model.is_sdxl`) returns
{'crossattn': [B, T, C], 'vector': [B, V]} with the vector from the whole text.
"""
from __future__ import annotations

import math
import zlib

import torch

from .tiny_models import SDXL_VECTOR_DIM, TOKENS

CHUNK_WORDS = 75  # sd_hijack_clip.FrozenCLIPEmbedderWithCustomWordsBase.chunk_length


def _embed(text: str, width: int, generator_offset: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(zlib.crc32(text.encode()) + generator_offset)
    return torch.randn(TOKENS, width, generator=gen) * 0.5


def chunks(text: str) -> list:
    """The texts of the 75-word chunks of `text`, words joined by one space (whitespace does not count, as for
    the CLIP tokenizer)."""
    words = text.split()
    count = math.ceil(max(len(words), 1) / CHUNK_WORDS)
    return [" ".join(words[i * CHUNK_WORDS:(i + 1) * CHUNK_WORDS]) for i in range(count)]


def token_count(text: str) -> int:
    """Tokens of the encoded `text` on its own: 77 per chunk."""
    return TOKENS * len(chunks(text))


def encode(texts, width: int) -> torch.Tensor:
    """[len(texts), 77 * max chunks, width]; shorter texts padded with the empty prompt's chunk."""
    per_text = [chunks(t) for t in texts]
    count = max(len(c) for c in per_text)
    return torch.stack([torch.cat([_embed(c, width) for c in parts + [""] * (count - len(parts))])
                        for parts in per_text])


def attach_text_encoder(model):
    """Give `model` `get_learned_conditioning(texts)` and `cond_stage_model_empty_prompt` (the empty prompt's
    crossattn [1, 77, C], set by v1.10.1 sd_models.load_model from get_empty_cond)."""
    def get_learned_conditioning(texts):
        crossattn = encode(list(texts), model.context_dim)
        if model.is_sdxl:
            vector = torch.stack([_embed(t, SDXL_VECTOR_DIM, 1)[0] for t in texts])
            return {"crossattn": crossattn, "vector": vector}
        return crossattn
    model.get_learned_conditioning = get_learned_conditioning
    empty = get_learned_conditioning([""])
    model.cond_stage_model_empty_prompt = empty["crossattn"] if isinstance(empty, dict) else empty
    return model
