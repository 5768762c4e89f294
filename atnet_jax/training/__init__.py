"""Training A-Net (stage 1) and T-Net (stage 2)."""
