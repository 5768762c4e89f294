"""The paper's training (sec. 3.4): full-size networks, 60 + 40 epochs, Adam 1e-5 decayed x0.2 every 20 epochs.

Set the dataset folders on the command line, e.g.
``--set data.davis=/data/DAVIS data.youtube_vos=/data/youtube-vos data.sbd=/data/SBD``.
"""
from atnet_jax.training.config import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig()  # every default is the paper's
