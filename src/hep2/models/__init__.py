"""Network architectures: plain PyTorch modules, no I/O or training logic."""

from .dcae import DCAE, layer_table
from .cnn import GaoCNN
from .mlp import MLP

__all__ = ["DCAE", "GaoCNN", "MLP", "layer_table"]
