"""The deep convolutional autoencoder of Table I (Vununu et al.), for any input size divisible by 16.

Encoder: four 3x3 convolutions (pad 1) each followed by ReLU and 2x2 max pooling with saved
indices, then "Conv 5", a convolution whose kernel covers the whole (size/16)^2 map and gives a
1x1xlatent code: the features. The decoder mirrors it: "Deconv 5" back to (size/16)^2, then
max-unpooling with the encoder's indices and 3x3 transposed convolutions down to one channel.
Plain PyTorch, no I/O or training logic.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .bands import BANDS, band_count, centre_distance


def n_features(kind: str, latent: int, widths, words: int = 0) -> int:
    """How many values ``DCAE.features(x, kind)`` (``DCAE.words`` for ``words``) gives per image."""
    return {
        "conv5": latent,
        "pooled": 2 * sum(widths),
        "both": latent + 2 * sum(widths),
        "words": (1 + band_count(BANDS)) * words,
    }[kind]


class DCAE(nn.Module):
    """The deep convolutional autoencoder of the paper's Table I, for any input side divisible by 16.

    Parameters
    ----------
    size : int
        The input's side in pixels (224 in Table I).
    widths : tuple of 4 ints
        The maps of Conv 1..4 (64, 128, 256, 512 in Table I).
    latent : int
        Conv 5's maps: the length of the feature vector (4,096 in Table I).
    in_channels : int
        Views of each cell read side by side (1: the cell).
    latent_activation, output : str
        Conv 5's activation (relu | linear) and the output's (sigmoid | linear).

    Examples
    --------
    >>> import torch
    >>> from hep2.models import DCAE
    >>> model = DCAE(size=32, widths=(16, 32, 64, 128), latent=1024)
    >>> x = torch.rand(2, 1, 32, 32)
    >>> model.encode(x).shape, model(x).shape
    (torch.Size([2, 1024]), torch.Size([2, 1, 32, 32]))
    """

    def __init__(
        self,
        size: int = 224,
        widths=(64, 128, 256, 512),
        latent: int = 4096,
        in_channels: int = 1,
        latent_activation: str = "relu",
        output: str = "sigmoid",
    ):
        super().__init__()
        if size % 16:
            raise ValueError(f"input size {size} must be divisible by 16 (four 2x2 poolings)")
        if len(widths) != 4:
            raise ValueError(f"widths must give the 4 encoder map counts, got {widths}")
        self.size, self.widths, self.latent = size, tuple(widths), latent
        self.latent_activation, self.output = latent_activation, output
        chans = [in_channels, *widths]
        self.encoder = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 3, padding=1) for i in range(4))
        k = size // 16
        self.conv5 = nn.Conv2d(widths[-1], latent, k)
        self.deconv5 = nn.ConvTranspose2d(latent, widths[-1], k)
        # Deconv 4 .. Deconv 1: 512->256, 256->128, 128->64, 64->1 for the paper's widths.
        self.decoder = nn.ModuleList(nn.ConvTranspose2d(chans[i + 1], chans[i], 3, padding=1) for i in (3, 2, 1, 0))
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)

    def set_channels_last(self, on: bool = True) -> "DCAE":
        """NHWC (channels-last) layout for the 3x3 layers, whose oneDNN kernels are faster in it on
        CPUs; Conv 5 / Deconv 5 keep theirs (they are matrix products over the flattened weights)."""
        fmt = torch.channels_last if on else torch.contiguous_format
        self.encoder.to(memory_format=fmt)
        self.decoder.to(memory_format=fmt)
        return self

    def _encode(self, x, decode: bool = True):
        """Conv 5's activations, and the pooling indices and map sizes the decoder needs (``decode``;
        without them pooling skips its indices, which take a third of a CPU's encoding time, and each
        ReLU follows its pooling)."""
        indices, sizes = [], []
        for conv in self.encoder:
            if decode:
                x = torch.relu(conv(x))
                sizes.append(x.shape)
                x, idx = self.pool(x)
                indices.append(idx)
            else:  # max then ReLU: the same values (ReLU is monotonic), the ReLU on a quarter of them
                x = torch.relu_(F.max_pool2d(conv(x), 2, 2))
        z = self._conv5(x)
        if self.latent_activation == "relu":
            z = torch.relu(z)
        return z, indices, sizes

    # Conv 5 covers the whole (size/16)^2 map and Deconv 5 starts from 1x1: each is one matrix
    # product with the layer's own weights (the same arithmetic as the convolution). They hold most
    # of the parameters (2 x 411M in Table I) and, at training batch sizes, are bound by memory
    # traffic, not arithmetic: they run in fp32 even under bf16 autocast, which would otherwise
    # copy all their weights to bf16 on every step.
    def _conv5(self, x):
        if not torch.is_grad_enabled():  # inference: no weight gradients, autocast pays on large batches
            return F.linear(x.contiguous().flatten(1), self.conv5.weight.flatten(1), self.conv5.bias)[:, :, None, None]
        with torch.autocast(x.device.type, enabled=False):
            x = x.float().contiguous().flatten(1)
            return F.linear(x, self.conv5.weight.flatten(1), self.conv5.bias)[:, :, None, None]

    def _deconv5(self, z):
        with torch.autocast(z.device.type, enabled=False):
            w = self.deconv5.weight  # (latent, C, k, k)
            y = z.float().flatten(1) @ w.flatten(1)
            return y.view(len(z), *w.shape[1:]) + self.deconv5.bias[:, None, None]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The Conv 5 activations: (N, latent) features."""
        return self._encode(x, decode=False)[0].flatten(1)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Each of Conv 1..4's activation maps, averaged and max-pooled over the image:
        (N, 2 * sum(widths)) features that do not depend on where in the image a pattern lies."""
        out = []
        for conv in self.encoder:
            x = torch.relu(conv(x))
            out += [x.mean((2, 3)), x.amax((2, 3))]
            x = F.max_pool2d(x, 2, 2)
        return torch.cat(out, 1)

    def activations(self, x: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Conv ``layer``'s maps (N, C, h, w) after its ReLU, before its pooling, and which of their
        positions see the cell (N, h, w): those whose window of the input holds a pixel above 0."""
        mask = (x > 0).float()
        for i, conv in enumerate(self.encoder[:layer]):
            if i:
                x, mask = F.max_pool2d(x, 2, 2), F.max_pool2d(mask, 2, 2)
            x = torch.relu(conv(x))
        return x, mask[:, 0] > 0

    @staticmethod
    def descriptors(maps: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) maps -> (N, h*w, C) local descriptors: each position's activations divided by
        their sum, square-rooted (a Hellinger reading of the channels' shares)."""
        d = maps.flatten(2).transpose(1, 2).float()
        return (d / (d.sum(2, keepdim=True) + 1e-6)).sqrt()

    def words(self, views: list[torch.Tensor], codebook: torch.Tensor, layer: int) -> torch.Tensor:
        """A bag of words of Conv ``layer``'s local activations: each position of the cell given its
        nearest codebook word; the words counted over the whole cell and over the concentric bands
        :data:`~hep2.models.bands.BANDS` cut it into, each count divided by its total; the counts of the
        views (the cell's flips / rotations) averaged, then square-rooted: (N, (1 + band_count(BANDS)) * K)."""
        K = len(codebook)
        n_regions = 1 + band_count(BANDS)
        # in float64: a position almost halfway between two words then gets the same one from any backend
        c = codebook.double()
        c2 = (c * c).sum(1)
        total = 0
        for x in views:
            maps, mask = self.activations(x, layer)
            n, _, h, w = maps.shape
            d = self.descriptors(maps)  # (N, P, C)
            word = (c2 - 2 * d.double() @ c.T).argmin(2)  # nearest word (+ |d|^2, the same for all)
            band = torch.as_tensor(1 + np.digitize(centre_distance(int(h), int(w)).ravel(), BANDS), device=x.device)
            inside = mask.flatten(1).float()  # (N, P)
            counts = torch.zeros(n, n_regions * K, device=x.device)
            counts.scatter_add_(1, word, inside)  # region 0: the whole cell
            counts.scatter_add_(1, word + band[None] * K, inside)
            counts = counts.view(n, n_regions, K)
            total = total + counts / counts.sum(2, keepdim=True).clamp_min(1)
        return (total / len(views)).flatten(1).sqrt()

    def features(self, x: torch.Tensor, kind: str = "conv5") -> torch.Tensor:
        """``conv5`` (the paper's), ``pooled``, or ``both`` side by side."""
        if kind == "conv5":
            return self.encode(x)
        if kind == "pooled":
            return self.pooled(x)
        if kind != "both":  # words need a codebook: DCAE.words
            raise ValueError(f"features kind {kind!r}: conv5, pooled or both here")
        return torch.cat([self.encode(x).float(), self.pooled(x).float()], 1)

    def n_features(self, kind: str = "conv5", words: int = 0) -> int:
        return n_features(kind, self.latent, self.widths, words)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of ``x`` (same shape)."""
        z, indices, sizes = self._encode(x)
        y = torch.relu(self._deconv5(z))
        for i, deconv in enumerate(self.decoder):
            level = 3 - i
            y = self.unpool(y, indices[level], output_size=sizes[level])
            y = deconv(y)
            if level:
                y = torch.relu(y)
        return torch.sigmoid(y) if self.output == "sigmoid" else y


def layer_table(size: int = 224, widths=(64, 128, 256, 512), latent: int = 4096, **kw) -> dict:
    """Each layer's name (as in Table I), output shape (C, H, W) and parameter count, and the total.

    Built on the meta device: shapes and counts without allocating the weights."""
    with torch.device("meta"):
        m = DCAE(size, widths, latent, **kw)
        x = torch.zeros(1, 1, size, size)
        rows = [{"name": "Input", "output": [1, size, size], "params": 0}]
        indices, shapes = [], []
        for i, conv in enumerate(m.encoder, 1):
            x = torch.relu(conv(x))
            rows.append({"name": f"Conv {i}", "output": list(x.shape[1:]), "params": _count(conv)})
            shapes.append(x.shape)
            x, idx = m.pool(x)
            indices.append(idx)
            rows.append({"name": f"Pool {i}", "output": list(x.shape[1:]), "params": 0})
        x = m.conv5(x)
        rows.append({"name": "Conv 5", "output": list(x.shape[1:]), "params": _count(m.conv5)})
        x = m.deconv5(x)
        rows.append({"name": "Deconv 5", "output": list(x.shape[1:]), "params": _count(m.deconv5)})
        for i, deconv in enumerate(m.decoder):
            level = 3 - i
            x = m.unpool(x, indices[level], output_size=shapes[level])
            rows.append({"name": f"Unpool {level + 1}", "output": list(x.shape[1:]), "params": 0})
            x = deconv(x)
            rows.append({"name": f"Deconv {level + 1}", "output": list(x.shape[1:]), "params": _count(deconv)})
    return {"layers": rows, "total_params": sum(r["params"] for r in rows), "features": latent}


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["DCAE", "layer_table", "n_features"]
