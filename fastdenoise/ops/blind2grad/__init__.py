"""Blind2Grad: dual mask (exact-count, detail-aware) and the fused gradient-consistency loss."""
