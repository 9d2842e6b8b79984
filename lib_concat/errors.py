"""The one exception class of the concat-conditioning core.

Every user-fixable problem (a channel count no known family takes, an input image missing or too small, a batch
of inputs that does not fit the batch) raises :class:`ConcatError` with a message that says what to do. It
subclasses ``ValueError`` so hosts that report ``ValueError`` as bad input show the message as is; feature packages
subclass it (``lib_iclight.ICLightError``) so their callers can catch either.
"""


class ConcatError(ValueError):
    """A user-fixable problem with a concat-conditioned model or its inputs; the message names the fix."""
