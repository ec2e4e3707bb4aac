"""The internals of `camc.export` (docs/exporter.md), one job per file.

    base.py       ExportError, constants
    inputs.py     images, boxes, targets, --extra tensors
    model.py      loading the model and its weights, resolving layers, detecting the head
    writer.py     output paths and the safetensors writer (single file or shards)
    run.py        the export loop: one forward/backward pass per batch for every layer

The layer hooks (`LayerTap`) and the Score-CAM / Ablation-CAM / ShapleyCAM inputs live in
`camc.torch` (`_capture.py`, `_method_inputs.py`), shared with camc's PyTorch front end.
The public entry points are `camc.export.export` and `python -m camc.export`.
"""
