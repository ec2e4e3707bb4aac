"""camc's exceptions: every error camc raises is a `camc.Error`."""


class Error(Exception):
    """Base class of camc's errors."""


class ProgramError(Error):
    """The program does not check (the message holds the diagnostics, as `camc check` prints them)."""


class InputError(Error, ValueError):
    """A tensor is missing, mis-shaped, not contiguous or on another device."""


class InputTypeError(Error, TypeError):
    """An argument of the wrong Python type (a string for a scalar, a list for a tensor)."""


class DeviceError(Error):
    """No GPU, or the CUDA libraries are missing."""
