"""atnet_jax: IVOS-ATNet (interactive video object segmentation with global and local transfer) in JAX/Flax."""

__version__ = "0.1.0"
