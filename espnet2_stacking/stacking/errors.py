"""The one error type of the stacking maths."""


class StackingConfigError(ValueError):
    """A stacking setting that cannot work; the message says why and what to use instead."""
