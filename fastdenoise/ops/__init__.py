"""Fused ops, one package each: reference.py, triton.py, ops.py (torch.library), api.py (public)."""
