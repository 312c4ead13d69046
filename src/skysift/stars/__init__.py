"""Stars: the learned star finders (U-Net and hybrid), their training data, recipes and evaluation.

The classical finder and the registry every finder is built through live in
:mod:`skysift.detection.stars`; ``detect_stars(image, method="hybrid")`` imports
the finders here on first use (they need torch for training, onnxruntime or
torch for inference).
"""
