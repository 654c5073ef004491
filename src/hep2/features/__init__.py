"""Hand-crafted descriptors (LBP, GLCM texture, a bag of DAISY words) and the SVM of the paper's Table II baselines."""

from .handcrafted import PREFERRED_SIZE, BoWFeatures, LBPFeatures, ShapeIndexFeatures, SVMClassifier, TextureFeatures

__all__ = ["PREFERRED_SIZE", "BoWFeatures", "LBPFeatures", "ShapeIndexFeatures", "SVMClassifier", "TextureFeatures"]
