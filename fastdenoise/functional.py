"""Flat namespace of every public fused op (import from here in training code)."""
from fastdenoise.ops.neighbor.api import nb2nb_loss
from fastdenoise.ops.neighbor.api import neighbor_subsample

__all__ = [
    "nb2nb_loss",
    "neighbor_subsample",
]
