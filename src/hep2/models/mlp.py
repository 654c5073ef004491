"""The classifier on autoencoder features: a fully connected network (4096-250-50-5 in the paper)."""

from __future__ import annotations

from torch import nn


class MLP(nn.Sequential):
    """Linear -> ReLU -> Dropout for each hidden layer, then a linear layer to class logits."""

    def __init__(self, n_in: int, hidden=(250, 50), n_out: int = 5, dropout: float = 0.5):
        layers, prev = [], n_in
        for h in hidden:
            layers += [nn.Linear(prev, h), nn.ReLU(), nn.Dropout(dropout)]
            prev = h
        layers.append(nn.Linear(prev, n_out))
        super().__init__(*layers)


__all__ = ["MLP"]
