"""Model-family detection lives in the shared concat core (``lib_concat.detect``); re-exported here for
IC-Light's callers."""
from ._concat import concat_module

_detect = concat_module("detect")
CONTEXT_FAMILY = _detect.CONTEXT_FAMILY
ModelKind = _detect.ModelKind
detect_model_kind = _detect.detect_model_kind

__all__ = ["CONTEXT_FAMILY", "ModelKind", "detect_model_kind"]
