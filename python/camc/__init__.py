"""camc: compiled class-activation-map (CAM) programs on NumPy arrays.

    >>> import camc
    >>> prog = camc.compile("gradcam")
    >>> maps = prog(A=a, G=g, size=(224, 224))   # [n,224,224] float32

See docs/python.md.
"""

from ._errors import DeviceError, Error, InputError, InputTypeError, ProgramError
from ._camc import Program, compile

__all__ = ["compile", "Program", "Error", "ProgramError", "InputError", "InputTypeError", "DeviceError"]
