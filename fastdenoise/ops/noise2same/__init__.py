"""Noise2Same: stratified J-mask sampler (Gaussian or donut replacement) and the fused loss."""
