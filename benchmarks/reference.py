"""The reference implementation the benchmarks compare against: Table I written plainly.

fp32, NCHW, eager mode, ``torch.optim.Adam`` with its default (per-parameter loop) update, a
Python loop over batches of float images: no mixed precision, no memory-layout change, no fused
kernels, no preloading tricks. It shares no code with ``hep2`` so that ours / reference measures
what hep2's own choices buy. Keep it this plain.
"""

from __future__ import annotations

import torch
from torch import nn


class ReferenceDCAE(nn.Module):
    """Table I for ``size`` divisible by 16: four 3x3 conv + ReLU + 2x2 max pooling (indices kept),
    Conv 5 over the whole remaining map to ``latent`` values; the mirrored decoder."""

    def __init__(self, size=224, widths=(64, 128, 256, 512), latent=4096):
        super().__init__()
        c = [1, *widths]
        self.conv1 = nn.Conv2d(c[0], c[1], 3, padding=1)
        self.conv2 = nn.Conv2d(c[1], c[2], 3, padding=1)
        self.conv3 = nn.Conv2d(c[2], c[3], 3, padding=1)
        self.conv4 = nn.Conv2d(c[3], c[4], 3, padding=1)
        self.conv5 = nn.Conv2d(c[4], latent, size // 16)
        self.deconv5 = nn.ConvTranspose2d(latent, c[4], size // 16)
        self.deconv4 = nn.ConvTranspose2d(c[4], c[3], 3, padding=1)
        self.deconv3 = nn.ConvTranspose2d(c[3], c[2], 3, padding=1)
        self.deconv2 = nn.ConvTranspose2d(c[2], c[1], 3, padding=1)
        self.deconv1 = nn.ConvTranspose2d(c[1], c[0], 3, padding=1)
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)

    def encode(self, x):
        x, i1 = self.pool(torch.relu(self.conv1(x)))
        x, i2 = self.pool(torch.relu(self.conv2(x)))
        x, i3 = self.pool(torch.relu(self.conv3(x)))
        x, i4 = self.pool(torch.relu(self.conv4(x)))
        return torch.relu(self.conv5(x)), (i1, i2, i3, i4)

    def forward(self, x):
        z, (i1, i2, i3, i4) = self.encode(x)
        y = torch.relu(self.deconv5(z))
        y = torch.relu(self.deconv4(self.unpool(y, i4)))
        y = torch.relu(self.deconv3(self.unpool(y, i3)))
        y = torch.relu(self.deconv2(self.unpool(y, i2)))
        return torch.sigmoid(self.deconv1(self.unpool(y, i1)))


def train_steps(model, images, batch, steps, lr=1e-3):
    """``steps`` plain training steps on float images (N, 1, S, S); returns seconds per step of all
    but the first (warm-up) step."""
    import time

    opt = torch.optim.Adam(model.parameters(), lr=lr, foreach=False)
    model.train()
    times = []
    for s in range(steps + 1):
        t = time.perf_counter()
        i = (s * batch) % max(1, len(images) - batch + 1)
        x = images[i : i + batch]
        loss = nn.functional.mse_loss(model(x), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return sum(times[1:]) / steps


@torch.no_grad()
def extract(model, images, batch=64):
    """Conv 5 features of float images, in batches."""
    model.eval()
    return torch.cat([model.encode(images[i : i + batch])[0].flatten(1) for i in range(0, len(images), batch)])
