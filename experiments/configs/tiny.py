"""A small network that trains on a 2-core CPU from scratch on synthetic videos (the demo checkpoint's recipe).

    python -m atnet_jax.data.synthetic --output data/synthetic --videos 60
    python -m atnet_jax.train --config experiments/configs/tiny.py --workdir runs/tiny --stage anet
    python -m atnet_jax.train --config experiments/configs/tiny.py --workdir runs/tiny --stage tnet

Same structure as the paper's networks at about 1% of the parameters; no ImageNet initialisation, so the
learning rate is higher than the paper's fine-tuning rate, and T-Net starts from the trained A-Net's encoder
and decoder (``tnet.start_from_anet``) instead of from ImageNet weights.
"""
import dataclasses

from atnet_jax.models.config import ModelConfig
from atnet_jax.training.config import DataConfig, StageConfig, TrainConfig


def get_config() -> TrainConfig:
    model = ModelConfig(stem_width=16, stage_widths=(8, 16, 24, 32), stage_blocks=(1, 1, 1, 2), se_reduction=4,
                        res5_dilations=(2, 4), decoder_width=24)
    stage = StageConfig(learning_rate=1e-3, lr_decay=0.2, epochs=3, lr_decay_epochs=2)
    return TrainConfig(
        model=model,
        data=DataConfig(synthetic="data/synthetic", crop=(192, 192), worker_count=1),
        anet=dataclasses.replace(stage, batch_size=8, steps_per_epoch=800),
        tnet=dataclasses.replace(stage, batch_size=4, steps_per_epoch=600, start_from_anet=True),
        checkpoint_every=200,
        keep_checkpoints=2,
        log_every=20,
    )
