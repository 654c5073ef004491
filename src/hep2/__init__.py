"""hep2: classify HEp-2 cell images into staining patterns with autoencoder features."""

from .errors import Hep2Error

__version__ = "0.3.1"
__all__ = ["Hep2Error", "__version__"]
