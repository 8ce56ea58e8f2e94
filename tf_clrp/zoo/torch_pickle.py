"""Read PyTorch ``.pth``/``.pt`` checkpoints into numpy arrays without importing torch.

Both on-disk formats written by ``torch.save`` are supported:

* the zip format (PyTorch >= 1.6): ``<prefix>/data.pkl`` plus one raw file per storage
  in ``<prefix>/data/<key>``;
* the legacy format: a magic-number pickle, a protocol-version pickle, a system-info
  pickle, the main pickle, a pickle listing storage keys, then every storage as an
  int64 element count followed by its raw bytes.

Unpickling is restricted: only ``collections.OrderedDict``, torch's tensor/parameter
rebuild functions and torch's typed storage classes are resolved (to local stand-ins,
torch is never imported). Any other global raises :class:`UnsupportedCheckpointError`
before anything is executed.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

__all__ = ["UnsupportedCheckpointError", "load_torch_checkpoint"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class UnsupportedCheckpointError(ValueError):
    """The file is not a plain tensor checkpoint this torch-free reader can decode."""


# torch storage class name -> little-endian numpy dtype ("bfloat16" handled specially).
_STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for a torch typed storage class (e.g. ``torch.FloatStorage``)."""

    name: str

    @property
    def itemsize(self) -> int:
        return (
            2 if self.name == "BFloat16Storage" else np.dtype(_STORAGE_DTYPES[self.name]).itemsize
        )


class _Storage:
    """A storage whose bytes may be filled in after unpickling (legacy format)."""

    def __init__(self, stype: _StorageType, numel: int) -> None:
        self.stype = stype
        self.numel = int(numel)
        self.data: np.ndarray | None = None

    def set_bytes(self, raw: bytes, big_endian: bool = False) -> None:
        """Decode ``raw`` into a flat numpy array of this storage's dtype."""
        itemsize = self.stype.itemsize
        if len(raw) != self.numel * itemsize:
            raise UnsupportedCheckpointError(
                f"storage size mismatch: expected {self.numel * itemsize} bytes, got {len(raw)}"
            )
        code = _STORAGE_DTYPES[self.stype.name]
        if code == "bfloat16":
            bits = np.frombuffer(raw, dtype=">u2" if big_endian else "<u2").astype(np.uint32)
            self.data = (bits << 16).view(np.float32)
            return
        dtype = np.dtype(code)
        if big_endian and dtype.itemsize > 1:
            dtype = dtype.newbyteorder(">")
        self.data = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="), copy=True)


class _StorageView:
    """Legacy-format view into a root storage (``view_metadata``)."""

    def __init__(self, root: _Storage, offset: int, size: int) -> None:
        self.root = root
        self.offset = int(offset)
        self.numel = int(size)


class _LazyTensor:
    """Tensor description (storage, offset, size, stride) materialised later."""

    def __init__(self, storage: Any, offset: int, size: Any, stride: Any) -> None:
        if not isinstance(storage, _Storage | _StorageView):
            raise UnsupportedCheckpointError("tensor rebuilt from something that is not a storage")
        self.storage = storage
        self.offset = int(offset)
        self.size = tuple(int(s) for s in size)
        self.stride = tuple(int(s) for s in stride)

    def to_numpy(self) -> np.ndarray:
        """Return a contiguous copy of the tensor as a numpy array."""
        storage, offset = self.storage, self.offset
        if isinstance(storage, _StorageView):
            offset += storage.offset
            storage = storage.root
        if storage.data is None:
            raise UnsupportedCheckpointError("tensor refers to a storage that was never read")
        flat = storage.data
        if len(self.size) != len(self.stride):
            raise UnsupportedCheckpointError(f"size {self.size} and stride {self.stride} differ")
        if any(s < 0 for s in self.stride) or offset < 0:
            raise UnsupportedCheckpointError("negative strides/offsets are not supported")
        if 0 in self.size:
            return np.zeros(self.size, dtype=flat.dtype)
        last = offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if last >= flat.size:
            raise UnsupportedCheckpointError(
                f"tensor (offset {offset}, size {self.size}, stride {self.stride}) "
                f"exceeds its storage of {flat.size} elements"
            )
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[offset:],
            shape=self.size,
            strides=tuple(s * item for s in self.stride),
            writeable=False,
        )
        return np.array(view, copy=True, order="C")


def _rebuild_tensor(storage: Any, storage_offset: int, size: Any, stride: Any) -> _LazyTensor:
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: int,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _LazyTensor:
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> Any:
    return data


def _rebuild_parameter_with_state(
    data: Any, requires_grad: Any, backward_hooks: Any, state: Any
) -> Any:
    return data


_TENSOR_TYPES = frozenset({("torch", "Tensor"), ("torch.nn.parameter", "Parameter")})


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    if not callable(func) or new_type not in _TENSOR_TYPES:
        raise UnsupportedCheckpointError(f"tensor subclass {new_type!r} is not supported")
    return func(*args)


_ALLOWED_FUNCTIONS: dict[tuple[str, str], Callable[..., Any]] = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler resolving only an allow-list of globals to harmless stand-ins."""

    def __init__(self, file: IO[bytes], load_storage: Callable[[tuple], Any]) -> None:
        super().__init__(file, encoding="utf-8")
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) in _TENSOR_TYPES:
            return (module, name)
        fn = _ALLOWED_FUNCTIONS.get((module, name))
        if fn is not None:
            return fn
        raise UnsupportedCheckpointError(
            f"refusing to unpickle global '{module}.{name}': only plain tensor state dicts "
            "are supported (no pickled modules, optimizers or custom classes)"
        )

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102
        if not isinstance(pid, tuple) or not pid:
            raise UnsupportedCheckpointError(f"unexpected persistent id {pid!r}")
        kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if kind != "storage":
            raise UnsupportedCheckpointError(f"unsupported persistent id type {kind!r}")
        return self._load_storage(pid[1:])


def _check_stype(stype: Any) -> _StorageType:
    if not isinstance(stype, _StorageType):
        raise UnsupportedCheckpointError(f"unsupported storage type {stype!r}")
    return stype


def _load_zip(path: str) -> Any:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if not pkl:
            if any(n.endswith("constants.pkl") for n in names):
                raise UnsupportedCheckpointError(
                    f"{path}: TorchScript archives are not supported; save a state_dict instead"
                )
            raise UnsupportedCheckpointError(f"{path}: zip archive without data.pkl")
        prefix = pkl[0][: -len("data.pkl")]
        big_endian = False
        if prefix + "byteorder" in names:
            big_endian = zf.read(prefix + "byteorder").decode().strip() == "big"
        storages: dict[str, _Storage] = {}

        def load_storage(data: tuple) -> _Storage:
            if len(data) != 4:
                raise UnsupportedCheckpointError(f"unexpected storage id {data!r}")
            stype, key, _location, numel = data
            stype = _check_stype(stype)
            key = str(key)
            if key not in storages:
                member = f"{prefix}data/{key}"
                if member not in names:
                    raise UnsupportedCheckpointError(f"{path}: missing storage record {member}")
                st = _Storage(stype, numel)
                st.set_bytes(zf.read(member), big_endian)
                storages[key] = st
            return storages[key]

        with zf.open(pkl[0]) as fh:
            return _RestrictedUnpickler(io.BytesIO(fh.read()), load_storage).load()


def _load_legacy(path: str) -> Any:
    with open(path, "rb") as fh:

        def no_storage(data: tuple) -> Any:
            raise UnsupportedCheckpointError("unexpected storage in checkpoint header")

        def header() -> Any:
            return _RestrictedUnpickler(fh, no_storage).load()

        try:
            magic = header()
        except Exception as exc:  # garbage bytes raise many different errors
            raise UnsupportedCheckpointError(f"{path}: not a PyTorch checkpoint ({exc})") from exc
        if magic != _LEGACY_MAGIC:
            raise UnsupportedCheckpointError(f"{path}: not a PyTorch checkpoint (bad magic number)")
        protocol = header()
        if protocol != _LEGACY_PROTOCOL:
            raise UnsupportedCheckpointError(f"{path}: unsupported legacy protocol {protocol!r}")
        sys_info = header()
        little = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True

        roots: dict[str, _Storage] = {}
        views: dict[str, _StorageView] = {}

        def load_storage(data: tuple) -> Any:
            if len(data) != 5:
                raise UnsupportedCheckpointError(f"unexpected storage id {data!r}")
            stype, root_key, _location, numel, view_metadata = data
            stype = _check_stype(stype)
            root_key = str(root_key)
            if root_key not in roots:
                roots[root_key] = _Storage(stype, numel)
            root = roots[root_key]
            if view_metadata is None:
                return root
            view_key, offset, size = view_metadata
            view_key = str(view_key)
            if view_key not in views:
                views[view_key] = _StorageView(root, offset, size)
            return views[view_key]

        result = _RestrictedUnpickler(fh, load_storage).load()
        keys = header()
        if not isinstance(keys, list):
            raise UnsupportedCheckpointError(f"{path}: malformed storage key list")
        for key in keys:
            root = roots.get(str(key))
            if root is None:
                raise UnsupportedCheckpointError(f"{path}: unknown storage key {key!r}")
            head = fh.read(8)
            if len(head) != 8:
                raise UnsupportedCheckpointError(f"{path}: truncated file")
            (numel,) = struct.unpack("<q" if little else ">q", head)
            if numel != root.numel:
                raise UnsupportedCheckpointError(
                    f"{path}: storage {key} has {numel} elements, expected {root.numel}"
                )
            nbytes = numel * root.stype.itemsize
            raw = fh.read(nbytes)
            if len(raw) != nbytes:
                raise UnsupportedCheckpointError(f"{path}: truncated file")
            root.set_bytes(raw, big_endian=not little)
        return result


def _flatten(obj: Any, prefix: str, out: dict[str, np.ndarray]) -> None:
    if isinstance(obj, _LazyTensor):
        out[prefix] = obj.to_numpy()
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    # Other values (ints, strings, lists of hyper-parameters, ...) are ignored.


def load_torch_checkpoint(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Load the tensors of a PyTorch checkpoint without torch.

    Args:
        path: A file written by ``torch.save`` holding a state dict (or a dict with a
            ``"state_dict"``/``"model"`` entry that is one), in zip or legacy format.

    Returns:
        Dict mapping parameter/buffer names (dotted for nested dicts) to contiguous numpy
        arrays with torch's shapes and dtypes (bfloat16 is widened to float32).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsupportedCheckpointError: the file is not a checkpoint of plain tensors, or it
            references any global outside the allow-list (nothing is executed).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"PyTorch checkpoint not found: {path}")
    try:
        obj = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    except UnsupportedCheckpointError:
        raise
    except Exception as exc:  # truncated/corrupt files raise many different errors
        raise UnsupportedCheckpointError(
            f"{path}: corrupt or unsupported PyTorch checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    out: dict[str, np.ndarray] = {}
    _flatten(obj, "", out)
    if not out:
        raise UnsupportedCheckpointError(f"{path}: no tensors found in checkpoint")
    return out
