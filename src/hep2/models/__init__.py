"""Network architectures: plain PyTorch modules, no I/O or training logic."""

from .dcae import DCAE, layer_table
from .mlp import MLP

__all__ = ["DCAE", "MLP", "layer_table"]
