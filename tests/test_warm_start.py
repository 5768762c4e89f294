"""T-Net starting from the trained A-Net: which arrays are copied, the stem's RGB channels, size errors."""
from __future__ import annotations

import jax
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from atnet_jax.training.warm_start import tnet_from_anet


def test_encoder_and_decoder_come_from_anet(tiny_variables):
    anet, tnet = tiny_variables["anet"], tiny_variables["tnet"]
    out, report = tnet_from_anet(tnet, anet)
    assert jax.tree.structure(out) == jax.tree.structure(jax.tree.map(np.asarray, tnet))
    flat_out, flat_tnet, flat_anet = flatten_dict(out), flatten_dict(tnet), flatten_dict(anet)
    copied = kept = 0
    for key, value in flat_out.items():
        collection, module, *rest = key
        if module in ("encoder_3ch", "decoder_prop"):
            source = (collection, {"encoder_3ch": "encoder_6ch", "decoder_prop": "decoder_iact"}[module],
                      *[("conv0_6ch" if p == "conv0_3ch" else p) for p in rest])
            expected = np.asarray(flat_anet[source])
            if "conv0_6ch" in source and rest[-1] == "kernel":
                assert expected.shape[2] == 6
                expected = expected[:, :, :3]
            np.testing.assert_array_equal(value, expected)
            copied += 1
        else:
            assert module in ("conv1x1", "prev_conv1x1")
            np.testing.assert_array_equal(value, flat_tnet[key])
            kept += 1
    assert report == {"copied": copied, "kept": kept} and copied > 100 and kept >= 2


def test_networks_of_another_size_are_refused(tiny_variables):
    anet = jax.tree.map(np.asarray, tiny_variables["anet"])
    kernel = anet["params"]["decoder_iact"]["lastconv_8"]["kernel"]
    anet["params"]["decoder_iact"]["lastconv_8"]["kernel"] = np.zeros(kernel.shape[:2] + (kernel.shape[2] + 1, 1))
    with pytest.raises(ValueError, match="lastconv_8/kernel.*differ in size"):
        tnet_from_anet(tiny_variables["tnet"], anet)
    del anet["params"]["decoder_iact"]["lastconv_8"]
    with pytest.raises(ValueError, match="A-Net has no params/decoder_iact/lastconv_8"):
        tnet_from_anet(tiny_variables["tnet"], anet)
