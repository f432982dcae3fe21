"""Positive2Negative: renoised data construction (RDC) and the (|d| + eps)^gamma loss."""
