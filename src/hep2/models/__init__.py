"""Network architectures: plain PyTorch modules, no I/O or training logic."""

from .cnn import GaoCNN
from .dcae import DCAE, layer_table
from .mlp import MLP

__all__ = ["DCAE", "GaoCNN", "MLP", "layer_table"]
