"""Small models for the camc.torch tests: the demo CNN (trained weights and test images when
examples/data has them), a tiny ViT, and seeded torchvision resnet18 / vgg11."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples" / "data"


def _demo_module():
    spec = importlib.util.spec_from_file_location("_camc_demo_model", ROOT / "examples" / "pytorch" / "demo_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def demo_model(seed: int = 0) -> nn.Module:
    """examples/pytorch/demo_model.py DemoNet with its trained weights (seeded random weights
    when examples/data/demo_model.safetensors is absent), eval mode."""
    module = _demo_module()
    torch.manual_seed(seed)
    model = module.DemoNet()
    weights = DATA / "demo_model.safetensors"
    if weights.exists():
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(weights)))
    return model.eval()


def demo_images(n: int = 2, seed: int = 0) -> torch.Tensor:
    """n normalized 64x64 demo images: the first test images of examples/data/demo.safetensors,
    or seeded noise when the cache is absent."""
    module = _demo_module()
    path = DATA / "demo.safetensors"
    if path.exists():
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            u8 = f.get_slice("image")[:n]
        x = u8.float() / 255.0
    else:
        x = torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    mean = torch.tensor(module.MEAN).view(1, 3, 1, 1)
    std = torch.tensor(module.STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        att = att.softmax(dim=-1)
        out = (att @ v).transpose(1, 2).reshape(b, t, d)
        return self.proj(out)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """32x32 RGB -> 4x4 patches of 8 px + a class token, 2 blocks of 64 dims, 10 classes (the
    head reads the class token). CAM layer: `blocks[-1].norm1`, with `vit_reshape_transform`."""

    def __init__(self, image: int = 32, patch: int = 8, dim: int = 64, depth: int = 2, heads: int = 4,
                 classes: int = 10):
        super().__init__()
        self.grid = image // patch
        self.patch_embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos_embed = nn.Parameter(torch.randn(1, self.grid * self.grid + 1, dim) * 0.5)
        self.blocks = nn.Sequential(*[Block(dim, heads, 2 * dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def vit_reshape_transform(tensor: torch.Tensor, height: int = 4, width: int = 4) -> torch.Tensor:
    """pytorch-grad-cam's ViT reshape_transform: drop the class token, tokens -> [n, dim, h, w]."""
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def tiny_vit(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return TinyViT().eval()


def resnet18(seed: int = 0) -> nn.Module:
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None).eval()


def vgg11(seed: int = 0) -> nn.Module:
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.vgg11(weights=None).eval()


def images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
