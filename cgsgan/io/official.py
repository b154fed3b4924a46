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

No pickle is written anywhere in this project; this module only exists to import official checkpoints.
"""

from __future__ import annotations

import _compat_pickle
import io
import os
import pickle
import re
import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

__all__ = [
    "ObjectRecord",
    "OfficialSnapshot",
    "PersistentRecord",
    "UnsafePickleError",
    "detect_generator_config",
    "network_state_dict",
    "read_official_snapshot",
]


class UnsafePickleError(ValueError):
    """The pickle names a global that is not on the allow-list (or misuses an allowed one)."""


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

    Subclasses are generated per qualified name (see :meth:`_RestrictedUnpickler.record_type`), so the stand-in
    is a real *type*, as pickle's NEWOBJ opcode requires. Constructing one or calling ``__setstate__`` on it
    only stores the arguments; no foreign code runs. The type itself also serves as an inert reference to a
    function that is stored as an attribute value (e.g. ``Renderer.scaling_activation = torch.exp``).
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
    """Stand-in for ``dnnlib.util.EasyDict``: a dict subclass, so NEWOBJ + SETITEMS rebuild it as data."""


@dataclass(frozen=True)
class _TypeMarker:
    """Non-callable placeholder for a tensor class named as an argument of ``_rebuild_from_type_v2``."""

    name: str


# --------------------------------------------------------------------------------------------------------------
# Safe stand-ins for the functions a snapshot calls while being unpickled.


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


def _load_storage(payload: Any) -> torch.TypedStorage | torch.UntypedStorage:
    """Replacement for ``torch.storage._load_from_bytes``: the payload is a legacy ``torch.save`` of one storage.

    ``weights_only=True`` keeps torch's own allow-list in charge of that inner pickle; ``map_location='cpu'``
    because the official loop pickles its live (CUDA) networks.
    """
    if not isinstance(payload, bytes | bytearray):
        raise UnsafePickleError("torch.storage._load_from_bytes called with a non-bytes argument")
    storage = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    if not isinstance(storage, torch.TypedStorage | torch.UntypedStorage):
        raise UnsafePickleError(f"storage payload holds a {type(storage).__name__}, not a storage")
    return storage


def _build_tensor(storage: Any, offset: int, size: Any, stride: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A plain CPU tensor viewing ``storage``; hooks, ``requires_grad`` and metadata are dropped on purpose."""
    if isinstance(storage, torch.TypedStorage):
        dtype = storage.dtype if dtype is None else dtype
        storage = storage._untyped_storage
    if not isinstance(storage, torch.UntypedStorage) or not isinstance(dtype, torch.dtype):
        raise UnsafePickleError("tensor rebuild called without a storage and dtype")
    return torch.empty(0, dtype=dtype).set_(storage, offset, tuple(size), tuple(stride))


def _rebuild_tensor_v1(storage: Any, offset: int, size: Any, stride: Any) -> torch.Tensor:
    return _build_tensor(storage, offset, size, stride)


def _rebuild_tensor_v2(storage: Any, offset: int, size: Any, stride: Any, *_ignored: Any) -> torch.Tensor:
    return _build_tensor(storage, offset, size, stride)


def _rebuild_tensor_v3(
    storage: Any, offset: int, size: Any, stride: Any, _requires_grad: Any, _hooks: Any, dtype: Any, *_ignored: Any
) -> torch.Tensor:
    return _build_tensor(storage, offset, size, stride, dtype)


def _rebuild_parameter(data: Any, *_ignored: Any) -> torch.Tensor:
    """Parameters come back as plain tensors: we only want their values."""
    if not isinstance(data, torch.Tensor):
        raise UnsafePickleError("parameter rebuild called without a tensor")
    return data


_TENSOR_REBUILDERS: frozenset[Callable[..., torch.Tensor]] = frozenset(
    {_rebuild_tensor_v1, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter}
)
_TENSOR_TYPE = _TypeMarker("torch.Tensor")
_PARAMETER_TYPE = _TypeMarker("torch.nn.Parameter")


def _rebuild_from_type(func: Any, new_type: Any, args: Any, _state: Any) -> torch.Tensor:
    """``torch._tensor._rebuild_from_type_v2`` for tensors that carry a ``__dict__``; the extra state is dropped."""
    if func not in _TENSOR_REBUILDERS or new_type not in (_TENSOR_TYPE, _PARAMETER_TYPE) or not isinstance(args, tuple):
        raise UnsafePickleError("_rebuild_from_type_v2 may only wrap an allowed tensor rebuild of a plain tensor")
    return func(*args)


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` (protocol 0/1 objects), limited to our record types."""
    if isinstance(cls, type) and issubclass(cls, ObjectRecord) and base is object and state is None:
        return cls.__new__(cls)
    if cls is _EasyDict and base is dict:
        return _EasyDict(state or {})
    raise UnsafePickleError(f"copyreg._reconstructor is only allowed for inert records, not {_describe(cls)}")


def _latin1_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it to carry bytes: str -> latin-1 bytes only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError("_codecs.encode is only allowed as encode(str, 'latin1')")
    return text.encode("latin-1")


_NP_RECONSTRUCT: Callable[..., np.ndarray] = np.empty(0).__reduce__()[0]  # numpy's own, whatever its module
_NP_SCALAR: Callable[..., np.generic] = np.float64(0).__reduce__()[0]


def _np_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's ``_reconstruct`` restricted to plain ndarrays (subclasses would run foreign ``__array_finalize__``)."""
    if subtype is not np.ndarray:
        raise UnsafePickleError("numpy _reconstruct is only allowed for numpy.ndarray")
    return _NP_RECONSTRUCT(np.ndarray, shape, dtype)


def _np_frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """numpy's protocol-5 ``_frombuffer``: raw bytes of a plain (non-object) dtype, copied to a writable array."""
    if not isinstance(buffer, bytes | bytearray | memoryview | pickle.PickleBuffer) or not isinstance(dtype, np.dtype):
        raise UnsafePickleError("numpy _frombuffer is only allowed on a bytes buffer and a dtype")
    if dtype.hasobject or order not in ("C", "F"):
        raise UnsafePickleError("numpy _frombuffer is only allowed for plain dtypes in C or F order")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order).copy(order="K")


# --------------------------------------------------------------------------------------------------------------
# The allow-list.

# Globals with a fixed safe meaning: stand-ins, or harmless data types/constructors.
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor_v1,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch._utils", "_rebuild_from_type_v2"): _rebuild_from_type,  # older torch
    ("torch", "Tensor"): _TENSOR_TYPE,
    ("torch._tensor", "Tensor"): _TENSOR_TYPE,
    ("torch.nn.parameter", "Parameter"): _PARAMETER_TYPE,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("torch", "device"): torch.device,
    ("torch", "Size"): torch.Size,
    ("collections", "OrderedDict"): OrderedDict,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("_codecs", "encode"): _latin1_encode,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.multiarray", "scalar"): _NP_SCALAR,
    ("numpy._core.multiarray", "scalar"): _NP_SCALAR,
    ("numpy.core.numeric", "_frombuffer"): _np_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _np_frombuffer,
}
# Data types only: no builtins.eval/exec/getattr/__import__/open/type here.
for _builtin in (object, dict, list, tuple, set, frozenset, int, float, complex, str, bytes, bytearray, bool, slice):
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


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves every global against the allow-list above; anything else raises :class:`UnsafePickleError`."""

    def __init__(self, file: io.BufferedIOBase) -> None:
        super().__init__(file)
        self._record_types: dict[str, type[ObjectRecord]] = {}

    def find_class(self, module: str, name: str) -> Any:
        module, name = _python3_name(module, name)
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if (module, name) == ("builtins", "getattr"):
            return self._inert_getattr
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


def _load_objects(path: Path) -> Any:
    """Unpickle ``path`` with the restricted unpickler; every failure becomes a ValueError naming the file."""
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        try:
            return _RestrictedUnpickler(f).load()
        except UnsafePickleError as exc:
            raise UnsafePickleError(f"{path}: {exc}") from None
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


def read_official_snapshot(path: str | os.PathLike[str]) -> OfficialSnapshot:
    """Read an official ``network-snapshot-*.pkl`` without executing any code embedded in it.

    Raises FileNotFoundError for a missing file, :class:`UnsafePickleError` (a ValueError) when the pickle
    names a global outside the allow-list, and ValueError (naming the path) for a truncated or non-pickle
    file, a top level that is not a dict, or a dict without any network.
    """
    path = Path(path)
    return _build_snapshot(path, _load_objects(path))


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
