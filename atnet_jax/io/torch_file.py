"""Reading ``torch.save`` files without PyTorch: the standard library (zipfile, a restricted pickle) and NumPy.

Two formats exist: the zip archive of PyTorch >= 1.6 (``<name>/data.pkl`` + one file per storage under
``<name>/data/``) and the legacy stream of earlier versions (the released ATNet checkpoint comes from PyTorch 1.2):
five pickles and the raw storages after them::

    magic number | protocol version | system info | the object (storages as persistent ids) | storage keys
    then for each key: int64 element count, the storage's bytes

Tensors are rebuilt from storage + offset + size + stride with NumPy (copies, C order). The unpickler runs no
code from the file: it knows the few names a state dict needs (an ``OrderedDict``, ``torch._utils``' tensor and
parameter rebuilders, the typed storages) and refuses any other with a :class:`WeightsError` naming the file and
the name. Storages saved on a GPU (``cuda:0``) are read like CPU ones.
"""
from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from atnet_jax.errors import WeightsError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
WRAPPER_KEYS = ("state_dict", "model")
"""Keys under which a checkpoint may hold the state dict (checked in this order, also nested)."""


def _bfloat16() -> np.dtype:
    import ml_dtypes  # installed with jax

    return np.dtype(ml_dtypes.bfloat16)


_STORAGE_DTYPES: dict[str, Any] = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": _bfloat16, "IntStorage": np.int32, "LongStorage": np.int64, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
    """What ``torch.FloatStorage`` and its siblings unpickle to: the element type."""

    def __init__(self, name: str):
        self.name = name
        kind = _STORAGE_DTYPES[name]
        self.dtype = np.dtype(kind() if callable(kind) and not isinstance(kind, type) else kind)


class _Storage:
    """A storage's elements, filled when its bytes are read (after the object pickle in the legacy format)."""

    def __init__(self, dtype: np.dtype, numel: int):
        self.dtype, self.numel = dtype, numel
        self.data: np.ndarray | None = None


class _StorageView:
    """A slice of a storage (legacy format: ``view_metadata``)."""

    def __init__(self, base: _Storage, offset: int, numel: int):
        self.base, self.offset, self.numel = base, offset, numel
        self.dtype = base.dtype


class _Tensor:
    """A tensor to build once its storage is read."""

    def __init__(self, storage: _Storage | _StorageView, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _rebuild_tensor(storage: Any, storage_offset: int, size: tuple, stride: tuple, *_: Any) -> _Tensor:
    if not isinstance(storage, (_Storage, _StorageView)):
        raise pickle.UnpicklingError(f"a tensor without a storage ({type(storage).__name__})")
    return _Tensor(storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


def _torch_size(*args: Any) -> tuple:
    return tuple(*args)


class _Refused(Exception):
    """A name the unpickler does not load (carried out of pickle's own error handling)."""


class _Unpickler(pickle.Unpickler):
    ALLOWED: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch", "Size"): _torch_size,
    }

    def __init__(self, file: BinaryIO, storages: Any):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        if module in ("torch", "torch.cuda") and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise _Refused(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        return self._storages(pid)


def _check_pid(pid: Any, length: tuple[int, ...]) -> tuple:
    if not (isinstance(pid, tuple) and len(pid) in length and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)):
        raise pickle.UnpicklingError(f"unexpected persistent id {str(pid)[:80]}")
    return pid


def _read_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise WeightsError(f"{path}: a zip file but not a torch.save archive (no single data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        order = "<"
        if f"{prefix}byteorder" in names:
            order = ">" if archive.read(f"{prefix}byteorder").strip() == b"big" else "<"
        loaded: dict[str, _Storage] = {}

        def storage(pid: Any) -> _Storage:
            _, kind, key, _location, numel = _check_pid(pid, (5,))
            if key not in loaded:
                dtype = kind.dtype.newbyteorder(order) if kind.dtype.itemsize > 1 else kind.dtype
                raw = archive.read(f"{prefix}data/{key}")
                if len(raw) < int(numel) * dtype.itemsize:
                    raise WeightsError(f"{path}: storage {key} holds {len(raw)} bytes, expected "
                                       f"{int(numel) * dtype.itemsize}")
                item = _Storage(kind.dtype, int(numel))
                item.data = np.frombuffer(raw, dtype, count=int(numel)).astype(kind.dtype)
                loaded[key] = item
            return loaded[key]

        with archive.open(pickles[0]) as f:
            return _Unpickler(io.BytesIO(f.read()), storage).load()


def _read_legacy(f: BinaryIO, source: str) -> Any:
    def pickled() -> Any:
        return _Unpickler(f, _no_storages).load()

    if pickled() != LEGACY_MAGIC:
        raise WeightsError(f"{source}: not a torch.save file (no zip archive, no legacy magic number)")
    if pickled() != LEGACY_PROTOCOL:
        raise WeightsError(f"{source}: legacy torch.save protocol other than {LEGACY_PROTOCOL}")
    info = pickled()
    if isinstance(info, Mapping) and info.get("little_endian") is False:
        raise WeightsError(f"{source}: saved on a big-endian machine, which is not supported")
    storages: dict[str, _Storage] = {}

    def storage(pid: Any) -> _Storage | _StorageView:
        _, kind, key, _location, numel, view = _check_pid(pid, (6,))
        if key not in storages:
            storages[key] = _Storage(kind.dtype, int(numel))
        if view is None:
            return storages[key]
        _view_key, offset, view_numel = view
        return _StorageView(storages[key], int(offset), int(view_numel))

    result = _Unpickler(f, storage).load()
    keys = _Unpickler(f, _no_storages).load()
    if not isinstance(keys, list):
        raise WeightsError(f"{source}: the storage key list is missing")
    for key in keys:
        if key not in storages:
            raise WeightsError(f"{source}: storage {key!r} is listed but no tensor uses it")
        item = storages[key]
        header = f.read(8)
        if len(header) < 8:
            raise WeightsError(f"{source}: truncated (storage {key!r} is missing)")
        (numel,) = struct.unpack("<q", header)
        if numel != item.numel:
            raise WeightsError(f"{source}: storage {key!r} holds {numel} elements, expected {item.numel}")
        raw = f.read(numel * item.dtype.itemsize)
        if len(raw) < numel * item.dtype.itemsize:
            raise WeightsError(f"{source}: truncated (storage {key!r} has {len(raw)} of "
                               f"{numel * item.dtype.itemsize} bytes)")
        item.data = np.frombuffer(raw, item.dtype.newbyteorder("<") if item.dtype.itemsize > 1 else item.dtype
                                   ).astype(item.dtype)
    return result


def _no_storages(pid: Any) -> Any:
    raise pickle.UnpicklingError(f"unexpected persistent id {str(pid)[:80]}")


def _tensor(t: _Tensor) -> np.ndarray:
    storage, offset = t.storage, t.offset
    if isinstance(storage, _StorageView):
        offset += storage.offset
        storage = storage.base
    if storage.data is None:
        raise ValueError("a tensor's storage was never written to the file")
    data = storage.data
    if any(s < 0 for s in t.size) or any(s < 0 for s in t.stride) or len(t.size) != len(t.stride):
        raise ValueError(f"a tensor with size {t.size} and stride {t.stride}")
    if 0 in t.size:
        return np.zeros(t.size, data.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(t.size, t.stride))
    if offset < 0 or last >= len(data):
        raise ValueError(f"a tensor of size {t.size} at offset {offset} runs past its storage of {len(data)}")
    view = np.lib.stride_tricks.as_strided(data[offset:], shape=t.size,
                                           strides=[s * data.itemsize for s in t.stride])
    return np.array(view, copy=True, order="C")


def _materialise(obj: Any) -> Any:
    if isinstance(obj, _Tensor):
        return _tensor(obj)
    if isinstance(obj, _Storage):
        return obj.data
    if isinstance(obj, Mapping):
        return collections.OrderedDict((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def read_torch_file(path: str | Path) -> Any:
    """The object a ``torch.save`` file holds, with every tensor as a NumPy array (storages on any device).

    :class:`WeightsError` (one line, naming the file) for a file that is not a torch.save file, is truncated
    or corrupt, or names a Python object that a state dict does not hold (nothing of it is run).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist or is not a file")
    try:
        if zipfile.is_zipfile(path):
            obj = _read_zip(path)
        else:
            with open(path, "rb") as f:
                obj = _read_legacy(f, str(path))
        return _materialise(obj)
    except WeightsError:
        raise
    except _Refused as err:
        raise WeightsError(f"{path}: refuses to load {err}: a checkpoint of weights holds tensors and dicts only, "
                           "this file names other Python objects (nothing of them was run)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            struct.error, zipfile.BadZipFile, OSError, UnicodeDecodeError) as err:
        raise WeightsError(f"{path}: not a readable torch.save file, truncated or corrupt "
                           f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no details'})"
                           ) from None


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The state dict a ``torch.save`` file holds, as {key: array}: at the top or under ``state_dict``/``model``
    (also nested), without DataParallel's ``module.`` prefixes; entries that are not tensors are left out."""
    obj = read_torch_file(path)
    while isinstance(obj, Mapping):
        wrapped = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if wrapped is None:
            break
        obj = wrapped
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    state = {str(k).removeprefix("module."): v for k, v in obj.items() if isinstance(v, np.ndarray)}
    if not state:
        raise WeightsError(f"{path}: holds no tensors (keys: {', '.join(map(str, list(obj)[:5]))})")
    return state
