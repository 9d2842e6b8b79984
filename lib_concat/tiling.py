"""Overlapping tiles with a linear blend, for running a model on an image larger than it can hold at once.

One axis of length ``n`` is cut into tiles of ``tile`` (the last one ends at ``n``, so tiles never go past the
edge; ``n <= tile`` gives one tile of length ``n``). Neighbours overlap by at least ``overlap``; a tile's weight
ramps linearly from ~0 to 1 across each overlap it shares with a neighbour (1 elsewhere, also at the image's own
edges), and the two ramps of an overlap sum to 1, so a blended value moves smoothly from one tile's to the next's.
Results are accumulated as ``sum(w * out) / sum(w)``: with no overlap every weight is 1 and every pixel comes from
exactly one tile, unchanged.

Tiles may be given in one grid and used at a multiple of it (``scale``): the x4 upscaler denoises in latent
tiles and decodes the same tiles at 4x.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, List, Sequence, Tuple

import torch


def axis_tiles(n: int, tile: int, overlap: int, multiple: int = 1) -> List[Tuple[int, int]]:
    """[(start, end)] covering 0..n. Starts are multiples of ``multiple`` where possible (the last tile ends at n).
    ``tile`` and ``n`` should be multiples of ``multiple``; ``0 <= overlap < tile``."""
    if tile <= 0 or overlap < 0 or overlap >= tile:
        raise ValueError(f"tile {tile} and overlap {overlap}: need 0 <= overlap < tile")
    if n <= tile:
        return [(0, n)]
    stride = max(multiple, (tile - overlap) // multiple * multiple)
    starts = list(range(0, n - tile, stride)) + [n - tile]
    return [(s, s + tile) for s in starts]


def _ramp(length: int, rising: bool) -> torch.Tensor:
    up = (torch.arange(length, dtype=torch.float64) + 0.5) / length
    return up if rising else up.flip(0)


@dataclasses.dataclass(frozen=True)
class Tile:
    """Rows [y0, y1) and columns [x0, x1) of the base grid, and how far it overlaps its neighbours on each side."""
    y0: int
    y1: int
    x0: int
    x1: int
    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0

    def box(self, scale: int = 1):
        """(row slice, column slice) of this tile in a grid ``scale`` times the base one."""
        return slice(self.y0 * scale, self.y1 * scale), slice(self.x0 * scale, self.x1 * scale)

    @staticmethod
    def _axis(size: int, before: int, after: int) -> torch.Tensor:
        w = torch.ones(size, dtype=torch.float64)
        if before:
            w[:before] = _ramp(before, True)
        if after:
            w[-after:] = torch.minimum(w[-after:], _ramp(after, False))
        return w

    def weight(self, scale: int = 1) -> torch.Tensor:
        """[h * scale, w * scale] float64 blend weight (ramps over the overlaps, 1 elsewhere)."""
        wy = self._axis((self.y1 - self.y0) * scale, self.top * scale, self.bottom * scale)
        wx = self._axis((self.x1 - self.x0) * scale, self.left * scale, self.right * scale)
        return wy[:, None] * wx[None, :]


def _overlaps(spans):
    """Per span, (overlap with the previous, overlap with the next)."""
    out = []
    for k, (start, end) in enumerate(spans):
        before = max(0, spans[k - 1][1] - start) if k > 0 else 0
        after = max(0, end - spans[k + 1][0]) if k + 1 < len(spans) else 0
        out.append((before, after))
    return out


def plan(height: int, width: int, tile: int, overlap: int, multiple: int = 1) -> List[Tile]:
    """Tiles of a ``height`` x ``width`` grid, row-major (see the module doc)."""
    rows, cols = axis_tiles(height, tile, overlap, multiple), axis_tiles(width, tile, overlap, multiple)
    return [Tile(y0, y1, x0, x1, top, bottom, left, right)
            for (y0, y1), (top, bottom) in zip(rows, _overlaps(rows))
            for (x0, x1), (left, right) in zip(cols, _overlaps(cols))]


def covered_area_ratio(tiles: Sequence[Tile], height: int, width: int) -> float:
    """Sum of tile areas / image area: the work of the tiled run relative to one pass over the whole image."""
    return sum((t.y1 - t.y0) * (t.x1 - t.x0) for t in tiles) / float(height * width)


def blend(tiles: Sequence[Tile], run: Callable[[Tile], torch.Tensor], out_shape: Sequence[int], scale: int = 1,
          dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """``sum(w * run(tile)) / sum(w)`` into a [N, C, H*scale, W*scale] tensor of ``out_shape``; ``run(tile)`` returns
    the tile's result [N, C, h*scale, w*scale]. One tile: its result as is (no weights involved)."""
    if len(tiles) == 1:
        return run(tiles[0]).to(dtype)
    acc = torch.zeros(out_shape, dtype=dtype, device=device)
    total = torch.zeros(out_shape[-2:], dtype=dtype, device=device)
    for t in tiles:
        result = run(t)
        weight = t.weight(scale).to(device=result.device, dtype=dtype)
        ys, xs = t.box(scale)
        acc[..., ys, xs] += result.to(dtype) * weight
        total[ys, xs] += weight
    return acc / total
