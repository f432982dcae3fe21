"""Flat namespace of every public fused op (import from here in training code)."""
from fastdenoise._rng import draw_seed
from fastdenoise.ops.apr.api import apr_loss
from fastdenoise.ops.apr.api import apr_sample
from fastdenoise.ops.blind2grad.api import blind2grad_loss
from fastdenoise.ops.blind2grad.api import dual_mask
from fastdenoise.ops.blindspot.api import s_shift
from fastdenoise.ops.blindspot.api import shift_conv2d
from fastdenoise.ops.blindspot.api import shifted_max_pool2d
from fastdenoise.ops.neighbor.api import nb2nb_loss
from fastdenoise.ops.neighbor.api import neighbor_pairs
from fastdenoise.ops.neighbor.api import neighbor_subsample
from fastdenoise.ops.p2n.api import p2n_gamma
from fastdenoise.ops.p2n.api import p2n_loss
from fastdenoise.ops.p2n.api import rdc_renoise
from fastdenoise.ops.recharge.api import recharge_l1_loss
from fastdenoise.ops.noise2same.api import noise2same_loss
from fastdenoise.ops.noise2same.api import standardize
from fastdenoise.ops.noise2same.api import stratified_mask
from fastdenoise.ops.zsn2n.api import pair_downsample
from fastdenoise.ops.zsn2n.api import zsn2n_loss

__all__ = [
    "apr_loss",
    "apr_sample",
    "blind2grad_loss",
    "draw_seed",
    "dual_mask",
    "nb2nb_loss",
    "neighbor_pairs",
    "neighbor_subsample",
    "p2n_gamma",
    "p2n_loss",
    "rdc_renoise",
    "recharge_l1_loss",
    "noise2same_loss",
    "standardize",
    "stratified_mask",
    "s_shift",
    "shift_conv2d",
    "shifted_max_pool2d",
    "pair_downsample",
    "zsn2n_loss",
]
