"""User-facing errors: one clear line, raised before anything is launched or written."""


class SpecError(ValueError):
    """A bad specification (unknown name, out-of-range value, inconsistent settings)."""


class DataUnavailable(SpecError):
    """A dataset that is neither on disk nor downloadable here."""
