"""The one exception class of the IC-Light core.

Every user-fixable problem (missing or corrupt model file, wrong base model, missing foreground or
background) raises :class:`ICLightError` with a message that says what to do. It subclasses the concat core's
``ConcatError`` (a ``ValueError``), so hosts that report ``ValueError`` as bad input show the message as is.
"""
from ._concat import concat_module


class ICLightError(concat_module("errors").ConcatError):
    """A user-fixable IC-Light problem; the message names the fix."""
