"""Reading ``torch.save`` files without PyTorch (``atnet_jax.io.torch_file``), against what ``torch.load`` read
from the same files when they were made (``tests/data/torch/make_fixtures.py``)."""
from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import data_path

from atnet_jax.errors import WeightsError
from atnet_jax.io.torch_file import LEGACY_MAGIC, LEGACY_PROTOCOL, read_state_dict, read_torch_file
from atnet_jax.io.torch_weights import load_state_dict, torch_to_flax
from atnet_jax.io.weights import load_weights

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ("tiny_zip", "tiny_legacy", "dtypes_zip", "dtypes_legacy", "dataparallel", "cuda_zip", "cuda_legacy")


def expected(stem: str) -> dict[str, np.ndarray]:
    """What torch.load read from ``<stem>.pth``: {key: array}, bfloat16 as (uint16 bits, "bfloat16")."""
    stored = "tiny_zip" if stem == "tiny_legacy" else stem  # the same tensors, stored once
    out = {}
    with np.load(data_path("torch", "expected.npz"), allow_pickle=False) as data:
        for name in data.files:
            if name.startswith(stored + "/"):
                out[name[len(stored) + 1:]] = data[name]
    return out


@pytest.mark.parametrize("stem", FIXTURES)
def test_reader_equals_torch_load(stem):
    state = read_state_dict(data_path("torch", f"{stem}.pth"))
    want = expected(stem)
    assert len(state) == len(want) > 0
    for name, value in want.items():
        key = name.removesuffix(":bfloat16").removeprefix("module.")
        got = state[key]
        if name.endswith(":bfloat16"):
            assert str(got.dtype) == "bfloat16"
            got = got.view(np.uint16)
        assert got.dtype == value.dtype and got.shape == value.shape, (key, got.dtype, got.shape)
        np.testing.assert_array_equal(got, value, err_msg=key)
        assert got.flags.c_contiguous and got.flags.writeable


def test_every_kind_of_tensor_is_covered():
    names = set(expected("dtypes_zip"))
    for name in ("float64", "float16", "bfloat16:bfloat16", "int32", "int64", "int16", "int8", "uint8", "bool",
                 "scalar", "empty", "slice_view", "transposed", "parameter", "1.num_batches_tracked"):
        assert name in names
    assert expected("dtypes_zip")["scalar"].shape == () and expected("dtypes_zip")["empty"].shape == (0, 3)
    assert b"cuda:0" in data_path("torch", "cuda_legacy.pth").read_bytes()
    with zipfile.ZipFile(data_path("torch", "cuda_zip.pth")) as archive:
        assert b"cuda:0" in archive.read("cuda_zip/data.pkl")
    assert data_path("torch", "tiny_legacy.pth").read_bytes()[:1] == b"\x80"  # a pickle, not a zip
    wrapped = read_torch_file(data_path("torch", "dataparallel.pth"))
    assert wrapped["epoch"] == 3 and all(k.startswith("module.") for k in wrapped["state_dict"])


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Eval:
    def __reduce__(self):
        return (eval, ("print('ran')",))


def _legacy(obj: object) -> bytes:
    f = io.BytesIO()
    for header in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"protocol_version": LEGACY_PROTOCOL, "little_endian": True}):
        pickle.dump(header, f, protocol=2)
    pickle.dump(obj, f, protocol=2)
    pickle.dump([], f, protocol=2)
    return f.getvalue()


def _zip(obj: object) -> bytes:
    f = io.BytesIO()
    with zipfile.ZipFile(f, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(obj, protocol=2))
        archive.writestr("archive/version", "3\n")
    return f.getvalue()


@pytest.mark.parametrize("wrap", [_legacy, _zip, lambda obj: pickle.dumps(obj, protocol=2)])
def test_a_pickle_that_names_other_code_is_refused_and_nothing_runs(tmp_path, wrap, capfd):
    marker = tmp_path / "ran"
    for obj, name in ((_Evil(marker), "system"), (_Eval(), "eval"),
                      ({"weight": _Evil(marker)}, "system")):
        path = tmp_path / "evil.pth"
        path.write_bytes(wrap(obj))
        with pytest.raises(WeightsError) as info:
            load_state_dict(path)
        message = str(info.value)
        assert len(message.splitlines()) == 1 and str(path) in message and name in message, message
        assert "refuses to load" in message
    assert not marker.exists() and "ran" not in capfd.readouterr().out


def test_truncated_and_corrupt_files_give_one_line_naming_the_file(tmp_path):
    legacy = data_path("torch", "tiny_legacy.pth").read_bytes()
    archive = data_path("torch", "tiny_zip.pth").read_bytes()
    pkl_at = archive.index(b"data.pkl") + 100
    cases = {
        "legacy_half.pth": legacy[: len(legacy) // 2],
        "legacy_header.pth": legacy[:40],
        "zip_half.pth": archive[: len(archive) // 2],
        "zip_pickle_corrupt.pth": archive[:pkl_at] + bytes(64) + archive[pkl_at + 64:],
        "empty.pth": b"",
        "text.pth": b"this is not a checkpoint\n",
        "legacy_storage_cut.pth": _legacy_with_short_storage(),
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(WeightsError) as info:
            read_state_dict(path)
        message = str(info.value)
        assert len(message.splitlines()) == 1 and message.startswith(str(path)), (name, message)


def _legacy_with_short_storage() -> bytes:
    """A legacy file cut inside its last storage (the raw storages follow the key list)."""
    legacy = data_path("torch", "cuda_legacy.pth").read_bytes()
    return legacy[:-8] + struct.pack("<d", 0.0)[:3]


def _convert(source: Path, output: Path, blocker: Path) -> subprocess.CompletedProcess:
    """``python -m atnet_jax.convert`` with ``import torch`` failing, as in an environment without PyTorch."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker), str(ROOT)]))
    env.pop("XLA_FLAGS", None)
    return subprocess.run([sys.executable, "-m", "atnet_jax.convert", "--input", str(source), "--output",
                           str(output)], capture_output=True, text=True, env=env, timeout=300)


def test_convert_reads_pth_without_torch_as_it_reads_the_same_tensors_from_npz(tmp_path, tiny_config):
    blocker = tmp_path / "blocker"
    (blocker / "torch").mkdir(parents=True)
    (blocker / "torch" / "__init__.py").write_text("raise ImportError('torch is not installed here')\n")
    npz = tmp_path / "tiny.npz"
    np.savez(npz, **expected("tiny_zip"))
    results = {}
    for name, source in (("npz", npz), ("zip", data_path("torch", "tiny_zip.pth")),
                         ("legacy", data_path("torch", "tiny_legacy.pth"))):
        result = _convert(source, tmp_path / name, blocker)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "read 472 tensors" in result.stdout, result.stdout
        results[name] = load_weights(tmp_path / name)
    variables, config = results["npz"]
    assert config == tiny_config
    reference = jax.tree.leaves(torch_to_flax(expected("tiny_zip"), tiny_config))
    for name in ("zip", "legacy"):
        other, other_config = results[name]
        assert other_config == config
        assert jax.tree.structure(other) == jax.tree.structure(variables)
        for a, b, c in zip(jax.tree.leaves(other), jax.tree.leaves(variables), reference):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
            np.testing.assert_array_equal(np.asarray(a), c)


def test_legacy_cuda_storage_classes_are_read(tmp_path):
    """PyTorch 1.x named a GPU tensor's storage ``torch.cuda.FloatStorage`` in legacy files (as the released
    checkpoint, saved from the GPU, does); the same file with that name reads as the CPU one."""
    data = data_path("torch", "cuda_legacy.pth").read_bytes()
    renamed = data.replace(b"ctorch\nFloatStorage\n", b"ctorch.cuda\nFloatStorage\n")
    assert renamed != data
    path = tmp_path / "gpu.pth"
    path.write_bytes(renamed)
    state, want = read_state_dict(path), read_state_dict(data_path("torch", "cuda_legacy.pth"))
    assert list(state) == list(want)
    for key in want:
        np.testing.assert_array_equal(state[key], want[key])
