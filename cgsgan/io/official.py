"""Read the official CGS-GAN training snapshots (``network-snapshot-*.pkl``) without running their code.

The official training loop writes a plain :func:`pickle.dump` of a dict such as
``{'training_set_kwargs': {...}, 'G': G, 'D': D, 'G_ema': G_ema, 'Gboth_opt': {...}, 'Gboth_interval': 1,
'Gboth_module': G, ...}``. Every network is a StyleGAN3 ``torch_utils.persistence`` object: it pickles as
``_reconstruct_persistent_obj(meta)``, where ``meta['module_src']`` is Python source that the original loader
``exec``s and ``meta['state']`` is the module's ``__dict__``. Loading such a file with :mod:`pickle` therefore runs
arbitrary code.

:func:`read_official_snapshot` uses a restricted unpickler instead. Every global the stream names is looked up
in an explicit allow-list and replaced by a safe stand-in: tensor and storage rebuilders that only build CPU
tensors (storages go through ``torch.load(..., weights_only=True)``), numpy array/scalar/dtype constructors,
a few data types, and inert *records* for the persistence hook, for ``torch.nn`` module classes and for
classes/functions of the official code base (e.g. the generator's ``Renderer`` and its activation functions).
``module_src`` is kept as a string and never compiled; nothing is imported. Any other global (``os.system``,
``builtins.eval``, ``subprocess.Popen``...) raises :class:`UnsafePickleError`. The records are then walked into
flat state dicts identical to ``module.state_dict()``.

The file cannot change anything beyond its own load either: stand-in classes and markers are created per load,
and BUILD (the opcode that sets an object's state) only fills in objects the load itself created. Sizes are
checked before memory is committed: every tensor must fit its storage, counted reads must fit the file, and
storages and arrays together stay under :data:`MAX_STORAGE_BYTES` each and :data:`MAX_TOTAL_BYTES` in total.

No pickle is written anywhere in this project; this module only exists to import official checkpoints.
"""

from __future__ import annotations

import _compat_pickle
import io
import math
import os
import pickle
import re
import struct
import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar

import numpy as np
import torch

__all__ = [
    "MAX_STORAGE_BYTES",
    "MAX_TOTAL_BYTES",
    "ObjectRecord",
    "OfficialSnapshot",
    "PersistentRecord",
    "UnsafePickleError",
    "detect_generator_config",
    "network_state_dict",
    "read_official_snapshot",
]

# What one load may allocate for storages and numpy arrays: per storage (or array) and in total. The largest
# official snapshot (2048^2) is under 1 GB in all, so these leave ample room, yet a small hostile file cannot make
# us reserve memory it does not even hold.
MAX_STORAGE_BYTES = 4 << 30
MAX_TOTAL_BYTES = 8 << 30


class UnsafePickleError(ValueError):
    """The pickle names a global that is not on the allow-list (or misuses an allowed one)."""


class _SizeError(ValueError):
    """A size check failed (a storage shorter than its tensor, an allocation over the cap); the message is final."""


# --------------------------------------------------------------------------------------------------------------
# Inert records standing in for objects whose classes we refuse to import.


@dataclass
class PersistentRecord:
    """A ``torch_utils.persistence`` object: its class name, its (never executed) module source and its state.

    ``module_name`` is not recorded by the persistence format, so it is not available here.
    """

    class_name: str
    module_src: str
    version: int | None
    state: Any


class ObjectRecord:
    """Inert stand-in for an instance of an allowed-but-not-imported class (``torch.nn.Linear``, ``Renderer``...).

    Subclasses are generated per qualified name and per load (see :meth:`_RestrictedUnpickler.record_type`), so
    the stand-in is a real *type*, as pickle's NEWOBJ opcode requires. Constructing one or giving it a state only
    stores the arguments; no foreign code runs. The type itself also serves as an inert reference to a function
    that is stored as an attribute value (e.g. ``Renderer.scaling_activation = torch.exp``).
    """

    qualname: ClassVar[str] = "?"
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    state: Any

    def __new__(cls, *args: Any, **kwargs: Any) -> ObjectRecord:
        record = super().__new__(cls)
        record.args = args
        record.kwargs = kwargs
        record.state = None
        return record

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Arguments were captured in ``__new__``, which NEWOBJ calls without ``__init__``."""

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<record of {self.qualname}>"


class _EasyDict(dict):
    """Base of the per-load stand-ins for ``dnnlib.util.EasyDict``: a dict subclass, so NEWOBJ + SETITEMS rebuild
    it as data."""


@dataclass(frozen=True)
class _TypeMarker:
    """Non-callable placeholder for a class that is only named as an argument (``torch.Tensor``, ``numpy.ndarray``)."""

    name: str


# --------------------------------------------------------------------------------------------------------------
# Safe stand-ins for the functions a snapshot calls while being unpickled. Those that keep no state are shared;
# the tensor, storage and numpy ones belong to one load (methods of _RestrictedUnpickler).


def _reconstruct_persistent(meta: Any) -> PersistentRecord:
    """Replacement for ``torch_utils.persistence._reconstruct_persistent_obj``: record, never exec."""
    if not isinstance(meta, Mapping) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise ValueError("malformed persistent object: expected meta with type='class' and a class_name")
    module_src = meta.get("module_src")
    version = meta.get("version")
    return PersistentRecord(
        class_name=meta["class_name"],
        module_src=module_src if isinstance(module_src, str) else "",
        version=version if isinstance(version, int) else None,
        state=meta.get("state"),
    )


def _rebuild_parameter(data: Any, *_ignored: Any) -> torch.Tensor:
    """Parameters come back as plain tensors: we only want their values."""
    if not isinstance(data, torch.Tensor):
        raise UnsafePickleError("parameter rebuild called without a tensor")
    return data


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` (protocol 0/1 objects), limited to our record types."""
    if isinstance(cls, type) and issubclass(cls, ObjectRecord) and base is object and state is None:
        return cls.__new__(cls)
    if isinstance(cls, type) and issubclass(cls, _EasyDict) and base is dict:
        return cls(state or {})
    raise UnsafePickleError(f"copyreg._reconstructor is only allowed for inert records, not {_describe(cls)}")


def _latin1_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it to carry bytes: str -> latin-1 bytes only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError("_codecs.encode is only allowed as encode(str, 'latin1')")
    return text.encode("latin-1")


def _without_size_form(kind: type[bytes] | type[bytearray]) -> Callable[..., bytes | bytearray]:
    """``bytes``/``bytearray`` minus their ``(n)`` form, which allocates n zero bytes from one number in the file."""

    def construct(*args: Any) -> bytes | bytearray:
        if args and hasattr(type(args[0]), "__index__"):  # ints, numpy integers and 0-d tensors alike
            raise UnsafePickleError(f"refusing builtins.{kind.__name__}(<number>): it allocates from a number")
        return kind(*args)

    return construct


def _np_dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    """``numpy.dtype`` as numpy pickles it, always as a private copy: a following BUILD sets that copy's state,
    never the state of numpy's shared builtin descriptor."""
    if not isinstance(spec, str):
        raise UnsafePickleError("numpy.dtype is only allowed on a type string")
    return np.dtype(spec, align=bool(align), copy=True)


_NP_RECONSTRUCT: Callable[..., np.ndarray] = np.empty(0).__reduce__()[0]  # numpy's own, whatever its module
_NP_SCALAR: Callable[..., np.generic] = np.float64(0).__reduce__()[0]


def _counts(value: Any) -> tuple[int, ...] | None:
    """A shape, size or stride as a tuple of non-negative ints (a bare int is a 1-d shape, as numpy allows)."""
    value = (value,) if type(value) is int else value
    if isinstance(value, tuple | list) and all(type(n) is int and n >= 0 for n in value):
        return tuple(value)
    return None


def _array_nbytes(shape: Any, dtype: Any) -> int:
    """What numpy allocates for ``shape`` x ``dtype``, known before it does: a shape alone can ask for TiBs."""
    dims = _counts(shape)
    if dims is None or not isinstance(dtype, str | bytes | np.dtype):
        raise UnsafePickleError("numpy array rebuilt with a malformed shape or dtype")
    return math.prod(dims) * np.dtype(dtype).itemsize


# --------------------------------------------------------------------------------------------------------------
# The allow-list.

# Globals with a fixed safe meaning that keeps no state: shared stand-ins, or harmless data types/constructors.
# Those tied to one load (storages, tensors, numpy arrays, EasyDict) are in _RestrictedUnpickler.__init__.
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "device"): torch.device,
    ("torch", "Size"): torch.Size,
    ("collections", "OrderedDict"): OrderedDict,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("_codecs", "encode"): _latin1_encode,
    ("numpy", "dtype"): _np_dtype,
    ("builtins", "bytes"): _without_size_form(bytes),
    ("builtins", "bytearray"): _without_size_form(bytearray),
}
# Data types only: no builtins.eval/exec/getattr/__import__/open/type here.
for _builtin in (object, dict, list, tuple, set, frozenset, int, float, complex, str, bool, slice):
    _SAFE_GLOBALS[("builtins", _builtin.__name__)] = _builtin
del _builtin

# Module roots of the official code base. Classes and functions from there sit in plain attributes of the
# networks (the generator's ``Renderer`` with its activation functions); they become inert records.
_INERT_ROOTS: tuple[str, ...] = ("training", "torch_utils", "dnnlib", "camera_utils")
# torch callables stored as attribute values: ``torch.exp`` pickles as getattr(_VariableFunctionsClass, 'exp').
_INERT_TORCH_MODULES: frozenset[str] = frozenset({"torch.nn.functional", "torch._C._nn", "torch._C._special"})
_INERT_TORCH_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {("torch._C", "_VariableFunctionsClass"), ("torch._C", "_VariableFunctions")}
)


def _is_inert_global(module: str, name: str) -> bool:
    """Names we may *reference* (as an inert record), never resolve."""
    if module.split(".", 1)[0] in _INERT_ROOTS or module in _INERT_TORCH_MODULES:
        return True
    return (module, name) in _INERT_TORCH_GLOBALS


def _is_torch_module_class(module: str, name: str) -> bool:
    """``torch.nn.modules.*`` classes that really are ``nn.Module`` subclasses (checked without importing)."""
    loaded = sys.modules.get(module) if module.startswith("torch.nn.modules.") else None
    candidate = vars(loaded).get(name) if loaded is not None else None
    return isinstance(candidate, type) and issubclass(candidate, torch.nn.Module)


def _torch_constant(module: str, name: str) -> Any:
    """``torch.float32`` and friends: dtypes, layouts and memory formats pickle as globals of ``torch``."""
    value = vars(torch).get(name) if module == "torch" else None
    return value if isinstance(value, torch.dtype | torch.layout | torch.memory_format) else None


def _describe(value: Any) -> str:
    """Short, attacker-proof description for error messages (no repr of arbitrary objects)."""
    if isinstance(value, type):
        return getattr(value, "qualname", None) or f"{value.__module__}.{value.__qualname__}"
    return f"a {type(value).__name__}"


def _is_attribute_name(name: Any) -> bool:
    return isinstance(name, str) and name.isidentifier() and not name.startswith("__")


def _python3_name(module: str, name: str) -> tuple[str, str]:
    """Undo the Python-2 spellings (``__builtin__``, ``copy_reg``) that protocols 0-2 write, as pickle would."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


# --------------------------------------------------------------------------------------------------------------
# The unpicklers.


class _Budget:
    """What one load may still allocate for storages and numpy arrays; charged before each allocation."""

    def __init__(self, total: int, per_storage: int) -> None:
        self.total, self.per_storage, self.used = total, per_storage, 0

    def check(self, nbytes: int, what: str) -> None:
        """The per-storage cap alone, for views (which allocate nothing now, but a copy of them would)."""
        if nbytes > self.per_storage:
            raise _SizeError(f"{what} takes {nbytes} bytes, over the cap of {self.per_storage} bytes per storage")

    def charge(self, nbytes: int, what: str) -> None:
        self.check(nbytes, what)
        if self.used + nbytes > self.total:
            raise _SizeError(
                f"{what} takes {nbytes} bytes after {self.used} already loaded, over the cap of {self.total} bytes "
                "in total"
            )
        self.used += nbytes


class _FileReader:
    """The file as the unpicklers read it: a counted read (bytes, strings, frames) longer than what is left of the
    file is truncation, reported before a buffer of the announced length exists (the C unpickler allocates first)."""

    def __init__(self, file: IO[bytes], size: int) -> None:
        self._file = file
        self.left = size

    def read(self, n: int) -> bytes:
        if not 0 <= n <= self.left:
            raise pickle.UnpicklingError(f"pickle data was truncated ({n} bytes announced, {self.left} left)")
        data = self._file.read(n)
        if len(data) != n:  # the file shrank under us; pickle's pure-Python opcodes would not notice
            raise pickle.UnpicklingError("pickle data was truncated")
        self.left -= n
        return data

    def readline(self) -> bytes:
        line = self._file.readline()
        self.left -= len(line)
        return line


class _GuardedUnpickler(pickle._Unpickler):
    """pickle's pure-Python unpickler refusing every global, reading through a :class:`_FileReader`, with BUILD under
    our control.

    The C unpickler cannot be restricted enough: its BUILD calls ``__setstate__`` or writes the ``__dict__`` and
    attributes of whatever is on the stack, including the stand-in classes and functions that find_class hands
    out (one file could rewrite them for every later load) and tensors (``Tensor.__setstate__`` resizes them past
    any size check).
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafePickleError(f"refusing to load global '{module}.{name}': not on the allow-list")

    def build(self, target: Any, state: Any) -> None:
        raise UnsafePickleError(f"refusing BUILD on {_describe(target)}: a storage record sets no object state")

    def _load_build(self) -> None:
        state = self.stack.pop()
        self.build(self.stack[-1], state)

    def _load_bytearray8(self) -> None:
        """BYTEARRAY8 minus pickle's buffer of the announced length, allocated before a single byte is read."""
        (length,) = struct.unpack("<Q", self.read(8))
        self.append(bytearray(self.read(length)))

    dispatch[pickle.BUILD[0]] = _load_build
    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8


class _StorageRecordReader(_GuardedUnpickler):
    """The storage records of a legacy ``torch.save`` payload, read without creating the storages.

    torch.load allocates each record's declared size before it reads the bytes, so the sizes are checked here
    first. A record is ``('storage', storage_type, key, location, numel, view_metadata)``.
    """

    def __init__(self, reader: _FileReader) -> None:
        super().__init__(reader)
        self.slot = object()  # what a record unpickles to here
        self.declared: dict[str, int] = {}  # storage key -> bytes; torch allocates a key on its first record

    def find_class(self, module: str, name: str) -> Any:
        """Storage types, as the dtype that gives their element size."""
        if name == "UntypedStorage" and module in ("torch", "torch.storage"):
            return torch.uint8
        legacy = vars(torch).get(name) if module == "torch" and name.endswith("Storage") else None
        dtype = getattr(legacy, "_dtype", None)  # FloatStorage & co.; their public .dtype warns of deprecation
        return dtype if isinstance(dtype, torch.dtype) else super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if not (
            isinstance(pid, tuple)
            and len(pid) == 6
            and pid[0] == "storage"
            and isinstance(pid[1], torch.dtype)
            and isinstance(pid[2], str)
            and type(pid[4]) is int
            and pid[4] >= 0
        ):
            raise UnsafePickleError("malformed storage record")
        self.declared.setdefault(pid[2], pid[4] * pid[1].itemsize)
        return self.slot


def _declared_storage_bytes(payload: bytes | bytearray) -> int:
    """Bytes torch.load will allocate for a legacy ``torch.save`` of one storage (magic number, protocol version,
    system info, then the record)."""
    reader = _FileReader(io.BytesIO(payload), len(payload))
    magic = _GuardedUnpickler(reader).load()
    if type(magic) is not int or magic != torch.serialization.MAGIC_NUMBER:
        raise UnsafePickleError("storage payload is not a legacy torch.save record")
    for _ in range(2):
        _GuardedUnpickler(reader).load()
    records = _StorageRecordReader(reader)
    if records.load() is not records.slot:
        raise UnsafePickleError("storage payload holds something other than one storage")
    return sum(records.declared.values())


class _RestrictedUnpickler(_GuardedUnpickler):
    """Resolves every global against the allow-list; anything else raises :class:`UnsafePickleError`.

    Each load gets its own stand-ins wherever one could hold state (the EasyDict class, record types, type markers,
    the storage and tensor rebuilders with their bookkeeping), and BUILD may only fill in what this load created:
    records, numpy arrays and dtypes, attributes of its dicts. A BUILD on a stand-in class, function or marker,
    or on a tensor, is refused.
    """

    def __init__(self, reader: _FileReader, budget: _Budget) -> None:
        super().__init__(reader)
        self._budget = budget
        self._record_types: dict[str, type[ObjectRecord]] = {}
        self._storages: dict[int, tuple[Any, str]] = {}  # id -> (storage, label); holding it keeps the id unique
        self._names: dict[int, tuple[Any, str]] = {}  # id -> (stand-in, the global it was handed out for)
        self._easydict = type("EasyDict", (_EasyDict,), {"__module__": __name__})
        self._tensor_types = (_TypeMarker("torch.Tensor"), _TypeMarker("torch.nn.Parameter"))
        self._ndarray_type = _TypeMarker("numpy.ndarray")
        self._tensor_rebuilders = (self._rebuild_tensor_v1, self._rebuild_tensor_v2, self._rebuild_tensor_v3)
        self._per_load: dict[tuple[str, str], Any] = {
            ("dnnlib.util", "EasyDict"): self._easydict,
            ("dnnlib", "EasyDict"): self._easydict,
            ("torch.storage", "_load_from_bytes"): self._load_storage,
            ("torch._utils", "_rebuild_tensor"): self._rebuild_tensor_v1,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor_v2,
            ("torch._utils", "_rebuild_tensor_v3"): self._rebuild_tensor_v3,
            ("torch._tensor", "_rebuild_from_type_v2"): self._rebuild_from_type,
            ("torch._utils", "_rebuild_from_type_v2"): self._rebuild_from_type,  # older torch
            ("torch", "Tensor"): self._tensor_types[0],
            ("torch._tensor", "Tensor"): self._tensor_types[0],
            ("torch.nn.parameter", "Parameter"): self._tensor_types[1],
            ("numpy", "ndarray"): self._ndarray_type,
            ("numpy.core.multiarray", "_reconstruct"): self._np_reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): self._np_reconstruct,
            ("numpy.core.multiarray", "scalar"): self._np_scalar,
            ("numpy._core.multiarray", "scalar"): self._np_scalar,
            ("numpy.core.numeric", "_frombuffer"): self._np_frombuffer,
            ("numpy._core.numeric", "_frombuffer"): self._np_frombuffer,
            ("builtins", "getattr"): self._inert_getattr,
        }

    def find_class(self, module: str, name: str) -> Any:
        module, name = _python3_name(module, name)
        value = self._resolve(module, name)
        self._names.setdefault(id(value), (value, f"{module}.{name}"))
        return value

    def _resolve(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in self._per_load:
            return self._per_load[key]
        if key in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[key]
        constant = _torch_constant(module, name)
        if constant is not None:
            return constant
        if _is_torch_module_class(module, name) or _is_inert_global(module, name):
            return self.record_type(f"{module}.{name}")
        raise UnsafePickleError(f"refusing to load global '{module}.{name}': not on the allow-list")

    def record_type(self, qualname: str) -> type[ObjectRecord]:
        """One generated :class:`ObjectRecord` subclass per qualified name (stable identity within a load)."""
        if qualname not in self._record_types:
            short = qualname.rsplit(".", 1)[-1]
            self._record_types[qualname] = type(short, (ObjectRecord,), {"qualname": qualname, "__module__": __name__})
        return self._record_types[qualname]

    def build(self, target: Any, state: Any) -> None:
        if isinstance(target, ObjectRecord):  # an instance: record types themselves are refused below
            target.state = state
        elif type(target) is np.ndarray:  # numpy sizes the array from the state before checking its data
            if not isinstance(state, tuple) or len(state) not in (4, 5):
                raise UnsafePickleError("malformed numpy array state")
            self._budget.charge(_array_nbytes(state[-4], state[-3]), "a numpy array")
            target.__setstate__(state)
        elif isinstance(target, np.dtype):  # a private copy (see _np_dtype); numpy checks its own state
            target.__setstate__(state)
        elif type(target) in (OrderedDict, self._easydict) and self._is_attribute_state(target, state):
            vars(target).update(state)  # e.g. the _metadata of a state_dict
        else:
            named = self._names.get(id(target))
            raise UnsafePickleError(
                f"refusing BUILD on {named[1] if named else _describe(target)}: a pickle may only set the state of "
                "records, numpy arrays and dicts that it created"
            )

    @staticmethod
    def _is_attribute_state(target: Any, state: Any) -> bool:
        """Plain attribute values that shadow nothing of the class (an instance ``items`` would hijack ``.items()``)."""
        return isinstance(state, dict) and all(
            _is_attribute_name(key) and not hasattr(type(target), key) for key in state
        )

    def _inert_getattr(self, target: Any, name: Any) -> type[ObjectRecord]:
        """``builtins.getattr`` only as a lookup on an inert reference, yielding another inert reference.

        Needed because builtin torch functions pickle as ``getattr(torch._C._VariableFunctionsClass, 'exp')``.
        On anything real (a class, a function, a tensor) getattr is refused: that is the classic escape route.
        """
        if not (isinstance(target, type) and issubclass(target, ObjectRecord)) or not _is_attribute_name(name):
            raise UnsafePickleError(
                f"refusing builtins.getattr({_describe(target)}, {str(name)[:80]!r}): "
                "getattr is only allowed on inert references"
            )
        return self.record_type(f"{target.qualname}.{name}")

    # -- storages and tensors

    def _load_storage(self, payload: Any) -> torch.TypedStorage | torch.UntypedStorage:
        """``torch.storage._load_from_bytes``: the payload is a legacy ``torch.save`` of one storage.

        Its declared size is checked against the payload and the budget before torch allocates it.
        ``weights_only=True`` keeps torch's own allow-list in charge of that inner pickle; ``map_location='cpu'``
        because the official loop pickles its live (CUDA) networks.
        """
        if not isinstance(payload, bytes | bytearray):
            raise UnsafePickleError("torch.storage._load_from_bytes called with a non-bytes argument")
        label = f"storage #{len(self._storages) + 1}"
        try:
            declared = _declared_storage_bytes(payload)
        except UnsafePickleError as exc:
            raise UnsafePickleError(f"{label}: {exc}") from None
        if declared > len(payload):
            raise _SizeError(f"{label} declares {declared} bytes but its payload holds only {len(payload)} bytes")
        self._budget.charge(declared, label)
        storage = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        if not isinstance(storage, torch.TypedStorage | torch.UntypedStorage):
            raise UnsafePickleError(f"{label} holds a {type(storage).__name__}, not a storage")
        self._storages[id(storage)] = (storage, label)
        return storage

    def _build_tensor(self, storage: Any, offset: Any, size: Any, stride: Any, dtype: Any = None) -> torch.Tensor:
        """A plain CPU tensor viewing ``storage``; hooks, ``requires_grad`` and metadata are dropped on purpose.

        ``set_`` silently grows a storage that is too short for the view (uninitialised memory: a truncated file
        would give garbage weights), so the view's extent is checked against the storage first.
        """
        label = self._storages.get(id(storage), (None, "its storage"))[1]
        if isinstance(storage, torch.TypedStorage):
            dtype = storage.dtype if dtype is None else dtype
            storage = storage._untyped_storage
        if not isinstance(storage, torch.UntypedStorage) or not isinstance(dtype, torch.dtype):
            raise UnsafePickleError("tensor rebuild called without a storage and dtype")
        dims, steps = _counts(size), _counts(stride)
        if dims is None or steps is None or len(dims) != len(steps) or type(offset) is not int or offset < 0:
            raise UnsafePickleError(f"tensor rebuild on {label} with a malformed size, stride or offset")
        tensor = f"{dtype} tensor of size {dims}, stride {steps}, offset {offset}"
        self._budget.check(math.prod(dims) * dtype.itemsize, f"the {tensor}")
        extent = 0 if 0 in dims else offset + 1 + sum((n - 1) * s for n, s in zip(dims, steps, strict=True))
        if extent * dtype.itemsize > storage.nbytes():
            raise _SizeError(
                f"the {tensor} needs {extent * dtype.itemsize} bytes of {label}, which holds only "
                f"{storage.nbytes()} bytes"
            )
        return torch.empty(0, dtype=dtype).set_(storage, offset, dims, steps)

    def _rebuild_tensor_v1(self, storage: Any, offset: Any, size: Any, stride: Any) -> torch.Tensor:
        return self._build_tensor(storage, offset, size, stride)

    def _rebuild_tensor_v2(self, storage: Any, offset: Any, size: Any, stride: Any, *_ignored: Any) -> torch.Tensor:
        return self._build_tensor(storage, offset, size, stride)

    def _rebuild_tensor_v3(
        self, storage: Any, offset: Any, size: Any, stride: Any, _grad: Any, _hooks: Any, dtype: Any, *_ignored: Any
    ) -> torch.Tensor:
        return self._build_tensor(storage, offset, size, stride, dtype)

    def _rebuild_from_type(self, func: Any, new_type: Any, args: Any, _state: Any) -> torch.Tensor:
        """``torch._tensor._rebuild_from_type_v2`` for tensors that carry a ``__dict__``; the extra state is dropped."""
        if (
            func not in (*self._tensor_rebuilders, _rebuild_parameter)
            or not any(new_type is marker for marker in self._tensor_types)
            or not isinstance(args, tuple)
        ):
            raise UnsafePickleError("_rebuild_from_type_v2 may only wrap an allowed tensor rebuild of a plain tensor")
        return func(*args)

    # -- numpy

    def _np_reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        """numpy's ``_reconstruct``, for plain ndarrays only (subclasses would run foreign ``__array_finalize__``)."""
        if subtype is not self._ndarray_type:
            raise UnsafePickleError("numpy _reconstruct is only allowed for numpy.ndarray")
        self._budget.charge(_array_nbytes(shape, dtype), "a numpy array")
        return _NP_RECONSTRUCT(np.ndarray, shape, dtype)

    def _np_scalar(self, dtype: Any, *data: Any) -> np.generic:
        """numpy's ``scalar``; without data it allocates a zero scalar of the dtype's size (up to 2 GiB of void)."""
        if not isinstance(dtype, np.dtype):
            raise UnsafePickleError("numpy scalar is only allowed with a dtype")
        self._budget.charge(dtype.itemsize, "a numpy scalar")
        return _NP_SCALAR(dtype, *data)

    def _np_frombuffer(self, buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
        """numpy's protocol-5 ``_frombuffer``: raw bytes of a plain (non-object) dtype, copied to a writable array."""
        if not isinstance(buffer, bytes | bytearray | memoryview) or not isinstance(dtype, np.dtype):
            raise UnsafePickleError("numpy _frombuffer is only allowed on a bytes buffer and a dtype")
        if dtype.hasobject or order not in ("C", "F"):
            raise UnsafePickleError("numpy _frombuffer is only allowed for plain dtypes in C or F order")
        self._budget.charge(memoryview(buffer).nbytes, "a numpy array")
        return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order).copy(order="K")


def _load_objects(path: Path, budget: _Budget) -> Any:
    """Unpickle ``path`` with the restricted unpickler; every failure becomes a ValueError naming the file."""
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        try:
            return _RestrictedUnpickler(_FileReader(f, os.fstat(f.fileno()).st_size), budget).load()
        except (UnsafePickleError, _SizeError) as exc:
            raise type(exc)(f"{path}: {exc}") from None
        except Exception as exc:  # a corrupt stream can fail in any opcode handler, with any exception type
            hint = " (this looks like a torch.save zip archive, not a pickle)" if head.startswith(b"PK") else ""
            raise ValueError(f"{path}: not a readable pickle snapshot{hint}: {type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------------------------------------------
# Records -> state dicts and plain Python.


_MODULE_TABLES = ("_parameters", "_buffers", "_modules")


def _record_state(record: Any) -> Any:
    if isinstance(record, PersistentRecord | ObjectRecord):
        return record.state
    return None


def _module_state(record: Any) -> Mapping[str, Any] | None:
    """The ``__dict__`` of an ``nn.Module`` record, recognised by its ``_parameters``/``_buffers``/``_modules``."""
    state = _record_state(record)
    if isinstance(state, Mapping) and all(isinstance(state.get(key), Mapping) for key in _MODULE_TABLES):
        return state
    return None


def _class_name(record: PersistentRecord | ObjectRecord) -> str:
    return record.class_name if isinstance(record, PersistentRecord) else record.qualname.rsplit(".", 1)[-1]


def _tensor_value(value: Any, key: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{key} is a {type(value).__name__}, not a tensor")
    return value.detach().cpu()


def _collect_state_dict(record: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    """Mirror ``nn.Module.state_dict``: own parameters, persistent buffers, then children, in registration order."""
    state = _module_state(record)
    if state is None:
        raise ValueError(f"submodule {prefix.rstrip('.') or '<root>'} is not a torch module")
    for name, value in state["_parameters"].items():
        if value is not None:
            out[prefix + name] = _tensor_value(value, prefix + name)
    non_persistent = state.get("_non_persistent_buffers_set")
    non_persistent = non_persistent if isinstance(non_persistent, set | frozenset) else set()
    for name, value in state["_buffers"].items():
        if value is not None and name not in non_persistent:
            out[prefix + name] = _tensor_value(value, prefix + name)
    for name, child in state["_modules"].items():
        if child is not None:
            _collect_state_dict(child, f"{prefix}{name}.", out)


def network_state_dict(record: PersistentRecord | ObjectRecord) -> dict[str, torch.Tensor]:
    """Flat ``state_dict()``-style mapping of a module record (plain, detached CPU tensors)."""
    out: dict[str, torch.Tensor] = {}
    _collect_state_dict(record, "", out)
    return out


def _to_plain(value: Any, memo: dict[int, Any]) -> Any:
    """Records, EasyDicts, numpy scalars... -> dicts/lists/tuples/sets/numbers/str/None/tensors/ndarrays."""
    if isinstance(value, np.generic):  # before the number check: np.float64 subclasses float
        return value.item()
    if value is None or isinstance(value, bool | int | float | complex | str | bytes | np.ndarray):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if id(value) in memo:  # shared or cyclic containers
        return memo[id(value)]
    if isinstance(value, Mapping):
        plain: dict[Any, Any] = memo.setdefault(id(value), {})
        plain.update((_plain_key(k, memo), _to_plain(v, memo)) for k, v in value.items())
        return plain
    if isinstance(value, list):
        items: list[Any] = memo.setdefault(id(value), [])
        items.extend(_to_plain(v, memo) for v in value)
        return items
    if isinstance(value, tuple | set | frozenset):
        container = tuple if isinstance(value, tuple) else type(value)  # torch.Size -> tuple
        convert = _to_plain if container is tuple else _plain_key
        return container(convert(v, memo) for v in value)
    return _describe_object(value, memo)


def _plain_key(key: Any, memo: dict[int, Any]) -> Any:
    """Dict keys and set members must stay hashable; a record in that position becomes its string form."""
    converted = _to_plain(key, memo)
    try:
        hash(converted)
    except TypeError:
        return str(converted)
    return converted


def _describe_object(value: Any, memo: dict[int, Any]) -> Any:
    """Non-container leaves: records become descriptive dicts, inert references their dotted name."""
    if isinstance(value, type) and issubclass(value, ObjectRecord):
        return value.qualname
    if isinstance(value, PersistentRecord):
        return {"__class__": value.class_name, "state": _to_plain(value.state, memo)}
    if isinstance(value, ObjectRecord):
        plain = {"__class__": value.qualname, "state": _to_plain(value.state, memo)}
        if value.args or value.kwargs:
            plain.update(args=_to_plain(value.args, memo), kwargs=_to_plain(value.kwargs, memo))
        return plain
    if isinstance(value, _TypeMarker):
        return value.name
    return value  # torch.dtype / torch.device / slice...: immutable values, safe to hand out


def _plain(value: Any) -> Any:
    """Convert unpickled snapshot data to plain Python (see :func:`_to_plain`)."""
    return _to_plain(value, {})


def _is_optimizer_state(value: Any) -> bool:
    return isinstance(value, Mapping) and "state" in value and "param_groups" in value


# --------------------------------------------------------------------------------------------------------------
# Public API.

# Canonical network entries are classified first, so a later alias such as 'Gboth_module' (the same G object,
# stored by the official loop next to each optimizer) is recognised as an alias rather than the reverse.
_CANONICAL_NETWORKS: tuple[str, ...] = ("G", "G_ema", "D", "augment_pipe")


@dataclass
class OfficialSnapshot:
    """The content of an official snapshot, as plain data.

    ``aliases`` maps top-level keys that hold a network already listed under another key (the official loop
    stores ``<phase>_module`` next to each optimizer) to that key.
    """

    networks: dict[str, dict[str, torch.Tensor]]
    class_names: dict[str, str]
    init_kwargs: dict[str, dict]
    optimizers: dict[str, dict]
    extras: dict[str, object]
    aliases: dict[str, str] = field(default_factory=dict)


def _top_level_order(data: Mapping[Any, Any]) -> list[Any]:
    return sorted(data, key=lambda key: key not in _CANONICAL_NETWORKS)  # stable: file order otherwise


def _add_network(snapshot: OfficialSnapshot, path: Path, key: str, record: PersistentRecord | ObjectRecord) -> None:
    try:
        snapshot.networks[key] = network_state_dict(record)
    except ValueError as exc:
        raise ValueError(f"{path}: network {key!r}: {exc}") from exc
    snapshot.class_names[key] = _class_name(record)
    init_kwargs = _plain(_record_state(record).get("_init_kwargs"))  # the persistence decorator's record
    snapshot.init_kwargs[key] = init_kwargs if isinstance(init_kwargs, dict) else {}


def _classify_entries(snapshot: OfficialSnapshot, path: Path, data: Mapping[Any, Any]) -> None:
    """Top-level entries -> networks (or aliases of one), optimizer states, or plain extras."""
    seen: dict[int, str] = {}  # id(record) -> key it was first listed under
    for raw_key in _top_level_order(data):
        key, value = str(raw_key), data[raw_key]
        if _module_state(value) is not None:
            if id(value) in seen:
                snapshot.aliases[key] = seen[id(value)]
            else:
                seen[id(value)] = key
                _add_network(snapshot, path, key, value)
        elif _is_optimizer_state(value):
            snapshot.optimizers[key] = _plain(value)
        else:
            snapshot.extras[key] = _plain(value)


def _build_snapshot(path: Path, data: Any) -> OfficialSnapshot:
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a dict at the top level, found {type(data).__name__}")
    snapshot = OfficialSnapshot(networks={}, class_names={}, init_kwargs={}, optimizers={}, extras={})
    try:
        _classify_entries(snapshot, path, data)
    except RecursionError:  # pickles nest iteratively; our walk recurses, so a hostile file can nest too deep
        raise ValueError(f"{path}: snapshot nested too deeply to convert") from None
    if not snapshot.networks:
        raise ValueError(f"{path}: no networks found in the snapshot (top-level keys: {sorted(map(str, data))})")
    return snapshot


def read_official_snapshot(
    path: str | os.PathLike[str], *, max_storage_bytes: int | None = None, max_total_bytes: int | None = None
) -> OfficialSnapshot:
    """Read an official ``network-snapshot-*.pkl`` without executing any code embedded in it.

    Storages and numpy arrays may take at most ``max_storage_bytes`` each and ``max_total_bytes`` together
    (default: :data:`MAX_STORAGE_BYTES`, :data:`MAX_TOTAL_BYTES`, read at call time).

    Raises FileNotFoundError for a missing file, :class:`UnsafePickleError` (a ValueError) when the pickle
    names a global outside the allow-list or misuses an allowed one (e.g. a BUILD on a stand-in), and ValueError
    (naming the path) for a truncated or non-pickle file, a tensor that does not fit its storage, an allocation
    over the caps, a top level that is not a dict, or a dict without any network.
    """
    path = Path(path)
    budget = _Budget(
        MAX_TOTAL_BYTES if max_total_bytes is None else max_total_bytes,
        MAX_STORAGE_BYTES if max_storage_bytes is None else max_storage_bytes,
    )
    return _build_snapshot(path, _load_objects(path, budget))


# --------------------------------------------------------------------------------------------------------------
# Generator revision, from the state dict alone.

_UPSAMPLE_KEY = re.compile(r"point_gen\.upsample_layers\.(\d+)\.")
_RESBLOCKS = "point_gen.transformer.resblocks."
_FIRST_LAYERS = "point_gen.transformer.first_layers."
_LEVEL7_WIDTH = {16: "v1", 8: "v2"}  # v1 keeps max(16, 512 // 2**i) at level 7; v2 narrows it to 8


def _revision_from_order(keys: list[str]) -> str | None:
    """v1 registers ``transformer.resblocks`` before ``transformer.first_layers``; v2 the reverse."""
    first_res = next((i for i, k in enumerate(keys) if k.startswith(_RESBLOCKS)), None)
    first_first = next((i for i, k in enumerate(keys) if k.startswith(_FIRST_LAYERS)), None)
    if first_res is None or first_first is None:
        return None
    return "v1" if first_res < first_first else "v2"


def detect_generator_config(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """``{'resolution': R, 'revision': 'v1'|'v2'}`` of an official generator state dict (key order matters).

    The number of point-generator levels n gives R = 2**(n+3). Up to 1024 the two revisions have identical
    keys and shapes and differ only in registration order; at 2048 the level-7 width tells them apart too.
    """
    keys = list(state_dict)
    levels = {int(m.group(1)) for key in keys if (m := _UPSAMPLE_KEY.match(key))}
    if not levels:
        raise ValueError("not a CGS-GAN generator state dict: no point_gen.upsample_layers.* entries")
    by_order = _revision_from_order(keys)
    level7 = state_dict.get("point_gen.upsample_layers.7.res_fc.weight")
    by_width = _LEVEL7_WIDTH.get(int(level7.shape[0])) if level7 is not None else None
    if by_order and by_width and by_order != by_width:
        raise ValueError(f"inconsistent generator: key order says {by_order}, level-7 width says {by_width}")
    revision = by_width or by_order
    if revision is None:
        raise ValueError("cannot tell the generator revision: transformer blocks missing from the state dict")
    return {"resolution": 2 ** (len(levels) + 3), "revision": revision}
