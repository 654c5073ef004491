"""Hand-crafted descriptors (LBP, GLCM texture) and the SVM of the paper's Table II baselines."""

from .handcrafted import PREFERRED_SIZE, LBPFeatures, SVMClassifier, TextureFeatures

__all__ = ["PREFERRED_SIZE", "LBPFeatures", "SVMClassifier", "TextureFeatures"]
