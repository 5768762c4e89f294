"""PyTorch state_dict <-> Flax variables, and the ``python -m atnet_jax.convert`` command."""
from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import data_path
from reference_weights import read_key_table

from atnet_jax import convert
from atnet_jax.io.torch_weights import (
    ConversionError,
    flax_to_torch,
    infer_model_config,
    load_state_dict,
    torch_key,
    torch_shapes,
    torch_to_flax,
)
from atnet_jax.io.weights import load_weights
from atnet_jax.models import paper_model_config


def test_key_names_follow_pytorch_attributes():
    assert torch_key("params", ("encoder_6ch", "res2_0", "conv1", "kernel")) == "encoder_6ch.res2.0.conv1.weight"
    assert torch_key("params", ("encoder_6ch", "conv0_6ch", "bias")) == "encoder_6ch.conv0_6ch.bias"
    assert torch_key("batch_stats", ("decoder_iact", "lastconv_5", "var")) == "decoder_iact.lastconv.5.running_var"
    assert (torch_key("params", ("decoder_prop", "aspp_decoder", "global_avg_pool_2", "scale"))
            == "decoder_prop.aspp_decoder.global_avg_pool.2.weight")
    assert torch_key("params", ("prev_conv1x1", "kernel")) == "prev_conv1x1.weight"


def test_full_size_keys_and_shapes_equal_the_released_state_dict():
    table = read_key_table(data_path("reference", "atnet_state_dict_keys.tsv"))
    expected = {k: v for k, v in table.items() if not k.endswith("num_batches_tracked")}
    assert torch_shapes(paper_model_config()) == expected


def test_round_trip(tiny_config, tiny_state_dict):
    variables = torch_to_flax(tiny_state_dict, tiny_config)
    back = flax_to_torch(variables)
    assert back.keys() == tiny_state_dict.keys()
    for key, value in back.items():
        np.testing.assert_array_equal(value, tiny_state_dict[key], err_msg=key)
    # PyTorch OIHW -> Flax HWIO
    w = tiny_state_dict["encoder_3ch.conv0_3ch.weight"]
    np.testing.assert_array_equal(variables["tnet"]["params"]["encoder_3ch"]["conv0_3ch"]["kernel"][2, 5, 1],
                                  w[:, 1, 2, 5])


def test_batch_counters_are_accepted(tiny_config, tiny_state_dict):
    state = dict(tiny_state_dict, **{"encoder_6ch.bn1.num_batches_tracked": np.array(7)})
    torch_to_flax(state, tiny_config)


def test_unknown_missing_and_misshaped_keys_are_named(tiny_config, tiny_state_dict):
    with pytest.raises(ConversionError, match=r"unknown key 'decoder_prop\.extra\.weight'"):
        torch_to_flax(dict(tiny_state_dict, **{"decoder_prop.extra.weight": np.zeros(3)}), tiny_config)
    missing = dict(tiny_state_dict)
    del missing["indicator_encoder.conv1x1.bias"]
    with pytest.raises(ConversionError, match=r"missing key 'indicator_encoder\.conv1x1\.bias'"):
        torch_to_flax(missing, tiny_config)
    bad = dict(tiny_state_dict, **{"prev_conv1x1.weight": np.zeros((3, 3, 1, 1), np.float32)})
    with pytest.raises(ConversionError, match=r"key 'prev_conv1x1\.weight' has shape \(3, 3, 1, 1\), expected"):
        torch_to_flax(bad, tiny_config)


def test_load_state_dict_npz_strips_module_prefix(tmp_path):
    path = tmp_path / "sd.npz"
    np.savez(path, **{"module.conv1x1.bias": np.ones(2, np.float32)})
    assert list(load_state_dict(path)) == ["conv1x1.bias"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_state_dict(tmp_path / "nope.npz")
    (tmp_path / "x.ckpt").write_text("")
    with pytest.raises(ValueError, match=r"expected a \.pth/\.pt"):
        load_state_dict(tmp_path / "x.ckpt")


def test_convert_cli(tmp_path, tiny_config, tiny_state_dict, capsys):
    """The flags' earlier names, --torch and --out, still work."""
    npz = tmp_path / "tiny.npz"
    np.savez(npz, **tiny_state_dict)
    out = tmp_path / "weights"
    assert convert.main(["--torch", str(npz), "--out", str(out), "--model", "tiny"]) == 0
    assert "wrote" in capsys.readouterr().out
    variables, config = load_weights(out)
    assert config == tiny_config
    expected = torch_to_flax(tiny_state_dict, tiny_config)
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(a, b)
    # An existing output is refused (usage error), then replaced with --overwrite.
    assert convert.main(["--torch", str(npz), "--out", str(out), "--model", "tiny"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert convert.main(["--torch", str(npz), "--out", str(out), "--model", "tiny", "--overwrite"]) == 0
    # A missing input file is a usage error; a state_dict of the wrong size a runtime failure naming a key.
    assert convert.main(["--torch", str(tmp_path / "absent.pth"), "--out", str(tmp_path / "o")]) == 2
    capsys.readouterr()
    assert convert.main(["--torch", str(npz), "--out", str(tmp_path / "o"), "--model", "paper"]) == 1
    err = capsys.readouterr().err
    assert "key" in err and "expected" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_convert_flags_help_and_bad_inputs(tmp_path, tiny_config, tiny_state_dict, capsys):
    npz = tmp_path / "tiny.npz"
    np.savez(npz, **tiny_state_dict)
    out = tmp_path / "weights"
    assert convert.main(["--input", str(npz), "--output", str(out), "--model", "tiny"]) == 0
    assert str(out) in capsys.readouterr().out
    assert load_weights(out)[1] == tiny_config
    with pytest.raises(SystemExit) as exit_info:
        convert.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--input CHECKPOINT" in text and "--output DIR" in text and "examples:" in text
    assert "--torch CHECKPOINT" not in text and "--out DIR" not in text  # old names work, but are not shown
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file at all")
    empty = tmp_path / "empty.pth.d"
    empty.mkdir()
    cases = [
        (2, ["--input", str(tmp_path / "absent.pth"), "--output", str(tmp_path / "o")], "does not exist"),
        (2, ["--input", str(empty), "--output", str(tmp_path / "o")], "is a folder"),
        (2, ["--input", str(tmp_path), "--output", str(tmp_path / "o")], "is a folder"),
        (2, ["--input", str(out / "atnet_jax.json"), "--output", str(tmp_path / "o")], ".npz"),
        (1, ["--input", str(garbage), "--output", str(tmp_path / "o")], "garbage.npz"),
        (2, ["--input", str(npz), "--output", str(out), "--model", "tiny"], "--overwrite"),
    ]
    for code, argv, needle in cases:
        assert convert.main(argv) == code, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert err.startswith("python -m atnet_jax.convert: error: ") and needle in err, err
    assert not (tmp_path / "o").exists()


def test_a_conv_weight_with_the_wrong_number_of_dimensions_is_named(tiny_config, tiny_state_dict):
    for shape in [(16, 16, 3), (16, 16, 3, 3, 1), (16,)]:
        bad = dict(tiny_state_dict, **{"decoder_iact.convG1.weight": np.zeros(shape, np.float32)})
        with pytest.raises(ConversionError, match=rf"key 'decoder_iact\.convG1\.weight' has shape "
                                                  rf"\({', '.join(map(str, shape))},?\), expected \(16, 16, 3, 3\)"):
            torch_to_flax(bad, tiny_config)
    bad = dict(tiny_state_dict, **{"encoder_6ch.conv0_6ch.weight": np.zeros((8, 6, 7), np.float32)})
    with pytest.raises(ConversionError, match=r"key 'encoder_6ch\.conv0_6ch\.weight' has shape \(8, 6, 7\), "
                                              r"expected 4 dimensions"):
        infer_model_config(bad)


def _shapes_only(config):
    """A state_dict of the right shapes without the memory (broadcast zeros)."""
    return {k: np.broadcast_to(np.float32(0), shape) for k, shape in torch_shapes(config).items()}


def test_network_size_is_read_from_the_weights(tiny_config):
    import dataclasses

    from atnet_jax.training.config import load_config

    experiment = load_config(Path(__file__).resolve().parents[1] / "experiments" / "configs" / "tiny.py").model
    wider = dataclasses.replace(paper_model_config(), stage_blocks=(2, 3, 4, 5), res5_dilations=(2, 4, 8, 16, 32),
                                decoder_width=128, se_reduction=8, stem_width=32)
    for config in (paper_model_config(), tiny_config, experiment, wider):
        assert infer_model_config(_shapes_only(config)) == config
    state = _shapes_only(tiny_config)
    del state["encoder_6ch.res2.0.conv_down.weight"]
    with pytest.raises(ConversionError, match=r"missing key 'encoder_6ch\.res2\.0\.conv_down\.weight'"):
        infer_model_config(state)


def test_an_exported_demo_checkpoint_converts_back(tmp_path, capsys):
    """The demo weights (experiments/configs/tiny.py's network) -> a PyTorch-named .npz state_dict ->
    convert without --model -> the same variables and network config."""
    from atnet_jax.demo import DEFAULT_CHECKPOINT

    variables, config = load_weights(DEFAULT_CHECKPOINT)
    npz = tmp_path / "demo_state_dict.npz"
    np.savez(npz, **flax_to_torch(variables))
    out = tmp_path / "weights"
    assert convert.main(["--input", str(npz), "--output", str(out)]) == 0
    assert "network size read from the weights" in capsys.readouterr().out
    back, back_config = load_weights(out)
    assert back_config == config
    assert jax.tree.structure(back) == jax.tree.structure(variables)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(variables)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the experiment config names the same network; the tests' tiny network is another one
    config_file = Path(__file__).resolve().parents[1] / "experiments" / "configs" / "tiny.py"
    assert convert.main(["--input", str(npz), "--output", str(out), "--overwrite", "--config", str(config_file)]) == 0
    assert load_weights(out)[1] == config
    capsys.readouterr()
    assert convert.main(["--input", str(npz), "--output", str(tmp_path / "o"), "--model", "tiny"]) == 1
    assert "key" in capsys.readouterr().err
    assert convert.main(["--input", str(npz), "--output", str(tmp_path / "o"), "--model", "paper",
                         "--config", str(config_file)]) == 2
    assert "not both" in capsys.readouterr().err
