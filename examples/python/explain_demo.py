"""Explain the bundled demo CNN with camc.torch.CAM, as you would your own model.

The demo model (examples/pytorch/demo_model.py, weights in examples/data/demo_model.safetensors)
classifies cluttered digits on 64x64 canvases. This script takes the first images of the demo
cache (examples/data/demo16.safetensors holds them as uint8), explains the model's prediction
with Grad-CAM, Grad-CAM++ and a custom program at the third block (`features.relu3`, 16x16),
and writes the overlays as one PNG (`camc.show_cam_on_image`, PIL to save it).

    bash scripts/install-torch.sh && pip install ./python     # or PYTHONPATH=python after scripts/test.sh
    python examples/python/explain_demo.py --out demo-cams.png [--images 6]
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

import camc
from camc.torch import CAM

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "pytorch"))
from demo_model import MEAN, STD, DemoNet  # noqa: E402

# A program of your own, as source text: Grad-CAM's weights on squared activations.
SHARP = "cam sharp(A: [k,h,w], G: [k,h,w]) = relu(sum[k](mean[h,w](relu(G)) * A^2))"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="demo-cams.png")
    parser.add_argument("--images", type=int, default=6)
    args = parser.parse_args()

    model = DemoNet().eval()
    model.load_state_dict(load_file(str(HERE.parent / "data" / "demo_model.safetensors")))
    pixels = load_file(str(HERE.parent / "data" / "demo16.safetensors"))["image"][: args.images]  # uint8 [n,3,64,64]
    rgb = pixels.float() / 255
    x = (rgb - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)

    rows = [np.concatenate(list(rgb.permute(0, 2, 3, 1).numpy()), axis=1)]
    for program in ("gradcam", "gradcampp", SHARP):
        with CAM(model, target_layers=[model.features.relu3], program=program) as cam:
            maps = cam(x)  # [n,64,64] float32 in [0,1], for the predicted classes
        overlays = [camc.show_cam_on_image(img, m, use_rgb=True) for img, m in zip(rgb.permute(0, 2, 3, 1).numpy(), maps.numpy())]
        rows.append(np.concatenate(overlays, axis=1).astype(np.float32) / 255)
        print(f"{camc.compile(program).name:>10}: maps {tuple(maps.shape)}, predicted {model(x).argmax(1).tolist()}")
    grid = (np.concatenate(rows, axis=0) * 255).round().astype(np.uint8)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(args.out)
    print(f"wrote {args.out}: input row, then Grad-CAM, Grad-CAM++ and `sharp` over each image")


if __name__ == "__main__":
    main()
