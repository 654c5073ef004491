"""The baseline CNN of Table II: the small LeNet-style network of Gao et al. (Z. Gao, L. Wang,
L. Zhou, J. Zhang, "HEp-2 Cell Image Classification With Deep Convolutional Neural Networks",
IEEE JBHI 21(2), 2017; arXiv 1504.02531), trained from scratch.

Layers (the configuration the paper is cited with; its full text was not reachable here, so this
is the commonly cited one, and a third-party TensorFlow reimplementation of "Gao et al.'s Hep2Net"
has the same map counts, kernels, pools and hidden width):

    input 78x78 -> C1 6 maps 7x7 -> S2 2x2 max -> C3 16 maps 4x4 -> S4 3x3 max
                -> C5 32 maps 3x3 -> S6 3x3 max -> F7 150 units -> softmax output

With unpadded ("valid") convolutions and non-overlapping pooling the sizes divide exactly:
78 -> 72 -> 36 -> 33 -> 11 -> 9 -> 3, so F7 sees 32*3*3 = 288 values; the exactness is why we
read the paper's 78x78 input as meant for valid convolutions. (The reimplementation instead pads
"same", gives C3 a stride of 2 and adds batch normalisation; those are its own choices, left off
here by default but available as ``batchnorm``.) Activation: tanh, as in LeNet and the paper's
era; ``activation="relu"`` is the alternative. Other sizes work too, as long as each stage keeps
at least one pixel (pooling floors).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import Hep2Error

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


class GaoCNN(nn.Module):
    """Three convolution + max-pooling stages, one fully connected hidden layer, class logits
    (softmax is left to the loss / the caller)."""

    def __init__(
        self,
        n_classes: int,
        size: int = 78,
        maps=(6, 16, 32),
        kernels=(7, 4, 3),
        pools=(2, 3, 3),
        hidden: int = 150,
        activation: str = "tanh",
        batchnorm: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        if not (len(maps) == len(kernels) == len(pools)):
            raise Hep2Error(f"GaoCNN: maps {maps}, kernels {kernels} and pools {pools} must have the same length")
        if activation not in ACTIVATIONS:
            raise Hep2Error(f"GaoCNN: unknown activation {activation!r}: use one of {', '.join(ACTIVATIONS)}")
        if n_classes < 2:
            raise Hep2Error(f"GaoCNN: n_classes must be at least 2, got {n_classes}")
        act = ACTIVATIONS[activation]
        layers, prev, side = [], 1, size
        for m, k, p in zip(maps, kernels, pools):
            side = (side - k + 1) // p
            if side < 1:
                raise Hep2Error(
                    f"GaoCNN: input {size}x{size} is too small for kernels {kernels} and pools {pools}: "
                    "use a larger size (the paper's is 78)"
                )
            layers += [nn.Conv2d(prev, m, k), act(), nn.MaxPool2d(p)]
            if batchnorm:
                layers.append(nn.BatchNorm2d(m))
            prev = m
        self.size = size
        self.features = nn.Sequential(*layers)
        self.n_flat = prev * side * side
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(self.n_flat, hidden),
            act(),
            *([nn.Dropout(dropout)] if dropout else []),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, S, S) float images -> (N, n_classes) logits."""
        return self.classifier(self.features(x))


class _Block(nn.Module):
    """A ResNet basic block: two 3x3 conv + batch norm, identity (or 1x1 stride-2) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.short = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x):
        return torch.relu(self.body(x) + self.short(x))


class SmallResNet(nn.Module):
    """A small residual network for single cells (He et al. 2016, basic blocks): a 3x3 stem, one
    stage per width (the first at full resolution, then stride 2), global average pooling, dropout,
    class logits; any input size. The stem halves the resolution by default (``stem_stride`` 2:
    about 4x less compute than at full resolution, 2x faster training on 2 CPU cores at 64x64 with
    the same parameters). Widths 32-64-128 with 2 blocks each: 0.7 M parameters."""

    def __init__(
        self, n_classes: int, widths=(32, 64, 128), blocks: int = 2, dropout: float = 0.2, stem_stride: int = 2
    ):
        super().__init__()
        if n_classes < 2:
            raise Hep2Error(f"SmallResNet: n_classes must be at least 2, got {n_classes}")
        layers = [
            nn.Conv2d(1, widths[0], 3, stem_stride, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        prev = widths[0]
        for i, w in enumerate(widths):
            for b in range(blocks):
                layers.append(_Block(prev, w, 2 if (i > 0 and b == 0) else 1))
                prev = w
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(prev, n_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


__all__ = ["ACTIVATIONS", "GaoCNN", "SmallResNet"]
