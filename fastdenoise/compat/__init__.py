"""Drop-in replacements for the code people already train with, one module per client.

Each module keeps the client's own names, arguments, return values and reductions, so switching is
one import line:

* :mod:`fastdenoise.compat.neighbor2neighbor`: the official Neighbor2Neighbor ``train.py`` functions
  (``generate_mask_pair``, ``generate_subimages``, ``space_to_depth``) and its two-term loss with the
  ramp (``loss_terms``, ``ramp``).
* :mod:`fastdenoise.compat.zsn2n`: the official ZS-N2N functions (``pair_downsampler``, ``mse``,
  ``loss_func``, ``train``, ``denoise``).
* :mod:`fastdenoise.compat.aprrd`: the official APR-RD sampler class ``APR`` (``APR().apply(y, fy)``).
* :mod:`fastdenoise.compat.deepinv`: deepinv's ``Neighbor2Neighbor`` loss (needs ``deepinv``).

Where the client draws its random choices from torch's generator, the docstring of the adapter says
whether its results are statistically or bitwise equal to the client's.
"""
