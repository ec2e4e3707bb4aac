"""camc: class-activation-map (CAM) programs compiled to one fused kernel, on NumPy arrays and
PyTorch tensors (CPU and CUDA).

    >>> import camc
    >>> prog = camc.compile("gradcampp")          # a stdlib method, a .cam file, or source text
    >>> maps = prog(A=a, G=g, size=(224, 224))    # [n,224,224] float32, like a

    >>> from camc.torch import CAM                # a drop-in for pytorch-grad-cam (needs torch)
    >>> with CAM(model, target_layers=[model.layer4[-1]], program="gradcampp") as cam:
    ...     maps = cam(images)                     # [n,H,W] on the images' device

`camc.export(...)` / `python -m camc.export` write cache files for the `camc` command line.
`import camc` needs only NumPy; `camc.torch` and `camc.export` need torch. See docs/python.md.
"""

from ._errors import DeviceError, Error, InputError, InputTypeError, ProgramError
from ._camc import __version__
from ._program import Program, compile

__all__ = [
    "__version__",
    "compile",
    "Program",
    "show_cam_on_image",
    "export",
    "Error",
    "ProgramError",
    "InputError",
    "InputTypeError",
    "DeviceError",
]


def __getattr__(name: str):
    # Loaded on first use: they import torch or more of NumPy than `import camc` needs.
    if name == "show_cam_on_image":
        from ._overlay import show_cam_on_image

        return show_cam_on_image
    if name == "export":
        import importlib

        return importlib.import_module(".export", __name__)
    raise AttributeError(f"module 'camc' has no attribute {name!r}")
