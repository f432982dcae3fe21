"""Neighbor2Neighbor: neighbour sub-sampler and loss."""
