"""Developer tools (not installed with the package): the GPU compile check, the host-work counter and the
memory-traffic model. Run them from the repository root: ``python -m tools.gpucheck``, ``python -m tools.traffic``."""
