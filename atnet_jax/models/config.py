"""Network sizes and transfer-module options."""
from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Sizes of A-Net and T-Net; the defaults are the paper's full networks (the released checkpoint).

    Small widths exist for tests and the demo only (:func:`tiny_model_config`).
    """

    stem_width: int = 64  # conv0 output channels
    stage_widths: tuple[int, int, int, int] = (64, 128, 256, 512)  # bottleneck widths of res2..res5
    stage_blocks: tuple[int, int, int, int] = (3, 4, 6, 3)  # SE-ResNet50
    expansion: int = 4  # bottleneck output = expansion * width
    se_reduction: int = 16  # SE squeeze: out_channels // se_reduction
    res5_dilations: tuple[int, ...] = (2, 4, 8)  # multi-grid dilations of res5 (stride 1, output stride 16)
    decoder_width: int = 256  # ASPP, refine modules and head
    aspp_rates: tuple[int, int, int] = (6, 12, 18)
    aspp_dropout: float = 0.5
    head_dropouts: tuple[float, float] = (0.5, 0.1)
    local_max_displacement: int = 8  # released code: 9x9 = 81 displacements; paper text: 4 (5x5)
    local_stride: int = 2
    local_softmax: str = "height"  # released code; "window" is the paper's softmax over displacements
    global_softmax: str = "target"  # released code: over target positions; or "annotated"
    dtype: str = "float32"  # compute dtype of convolutions; "bfloat16" on GPU/TPU

    def __post_init__(self) -> None:
        if len(self.res5_dilations) != self.stage_blocks[3]:
            raise ValueError(
                f"res5_dilations {self.res5_dilations} needs one entry per res5 block ({self.stage_blocks[3]})"
            )
        if self.local_softmax not in ("height", "window"):
            raise ValueError(f"local_softmax must be 'height' or 'window', got {self.local_softmax!r}")
        if self.global_softmax not in ("target", "annotated"):
            raise ValueError(f"global_softmax must be 'target' or 'annotated', got {self.global_softmax!r}")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {self.dtype!r}")

    @property
    def out_channels(self) -> tuple[int, int, int, int]:
        """Channels of r2..r5."""
        return tuple(w * self.expansion for w in self.stage_widths)  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ValueError(f"unknown model config keys: {unknown}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def paper_model_config() -> ModelConfig:
    """The released network: SE-ResNet50 encoders, 256-wide decoders, 9x9 local window."""
    return ModelConfig()


def tiny_model_config() -> ModelConfig:
    """A narrow, shallow network for tests and the CPU demo (same structure, ~1% of the width)."""
    return ModelConfig(
        stem_width=8,
        stage_widths=(4, 8, 8, 16),
        stage_blocks=(1, 1, 1, 2),
        se_reduction=4,
        res5_dilations=(2, 4),
        decoder_width=16,
    )
