"""Reading cell datasets, loading and preprocessing their images, the built-in synthetic set."""

from .cellset import KNOWN_CLASSES, Cell, CellSet, normalise_class
from .images import Preprocess, load_images, preprocess_image, read_image
from .readers import open_dataset
from .summary import summarize

__all__ = [
    "KNOWN_CLASSES",
    "Cell",
    "CellSet",
    "normalise_class",
    "Preprocess",
    "load_images",
    "preprocess_image",
    "read_image",
    "open_dataset",
    "summarize",
]
