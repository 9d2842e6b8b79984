"""Writing to a generation's infotext and comments without touching other generations.

The X/Y/Z plot of v1.10.1 runs every cell on a shallow `copy(p)`, so all cells share one `extra_generation_params`
dict and one `comments` dict: a key written in place by one cell would appear in every later cell's infotext (and a
paste would then restore a feature that did not run). So we never write in place: each write gives this `p` its own
copy of the dict first (the WebUI reads both attributes from `p` when it makes the infotext and the comments)."""
from __future__ import annotations


def add_infotext(p, entries: dict) -> None:
    """Add `entries` to `p`'s infotext parameters, on a copy owned by `p`."""
    if entries:
        p.extra_generation_params = {**(getattr(p, "extra_generation_params", None) or {}), **entries}


def add_comment(p, text: str) -> None:
    """Show `text` under `p`'s images (as `p.comment` does), on a copy owned by `p`."""
    comments = getattr(p, "comments", None)
    if comments is None or text in comments:
        return
    p.comments = {**comments, text: 1}
