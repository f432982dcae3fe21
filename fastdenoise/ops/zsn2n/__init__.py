"""Zero-Shot Noise2Noise (ZS-N2N): pair downsampler and loss."""
