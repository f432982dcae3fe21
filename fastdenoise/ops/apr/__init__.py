"""APR (Adjacent Pixel Replacer, APR-RD / AT-BSN): 3x3 pair sampler and fused loss."""
