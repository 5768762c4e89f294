"""A-Net, T-Net and their building blocks."""

from atnet_jax.models.annotation_net import AnnotationNet, Converter
from atnet_jax.models.config import ModelConfig, paper_model_config, tiny_model_config
from atnet_jax.models.transfer_net import TransferNet

__all__ = ["AnnotationNet", "Converter", "ModelConfig", "TransferNet", "paper_model_config", "tiny_model_config"]
