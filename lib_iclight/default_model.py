"""Which IC-Light file a user gets when they choose none: an fc file when one exists.

The official release sorts `iclight_sd15_fbc` first, and fbc needs a background, so "the first file found" is the
wrong default. Kinds are read from each file's header (conv_in channels), never from the name."""
from __future__ import annotations

import os
from typing import Optional

from .model_file import OFFICIAL_FILES, list_model_files, open_offset_file

_RANK = {"fc": 0, "fbc": 1}


def preferred_model_file(folder: str) -> Optional[str]:
    """The name (as `list_model_files` gives it) of the default file in `folder`: fc kind first (the official
    `iclight_sd15_fc` before `fcon` and other fc files), then fbc; unreadable files last. None when there is none."""
    names = list_model_files(folder)
    if not names:
        return None

    def rank(name):
        try:
            kind = open_offset_file(os.path.join(folder, name)).kind
        except Exception:  # a damaged file is still listed; choosing it gives the error that names it
            kind = None
        official = OFFICIAL_FILES.index(os.path.basename(name)) if os.path.basename(name) in OFFICIAL_FILES else 9
        return (_RANK.get(kind, 2), official, name)

    return min(names, key=rank)
