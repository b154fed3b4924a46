"""cgsgan.io.official: official (StyleGAN3-persistence) snapshots are read as data, never executed.

The pickles are built here in the official format: fake ``torch_utils.persistence`` / ``dnnlib.util`` /
``training.renderer`` modules are registered in ``sys.modules`` only while pickling (monkeypatch removes them),
and the persistent classes reduce to ``_reconstruct_persistent_obj(meta)`` exactly like the real decorator.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import sys
import types
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from cgsgan.io import official as official_module
from cgsgan.io.official import (
    UnsafePickleError,
    detect_generator_config,
    read_official_snapshot,
)

# --------------------------------------------------------------------------------------------------------------
# Stand-ins for the official code base, pickled by reference under their official module names.


class EasyDict(dict):
    """dnnlib.util.EasyDict (only its pickled identity matters)."""


EasyDict.__module__ = "dnnlib.util"


class Renderer:
    """A plain (non-Module) object in the generator's attributes, like the official ``Renderer``."""

    def __init__(self) -> None:
        self.sh_degree = 0
        self.bg_color = torch.ones(3)
        self.scaling_activation = torch.exp  # pickles as builtins.getattr(torch._C._VariableFunctionsClass, 'exp')
        self.rotation_activation = torch.nn.functional.normalize
        self.inverse_opacity_activation = inverse_sigmoid


Renderer.__module__ = "training.renderer"


def inverse_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.log(x / (1 - x))


inverse_sigmoid.__module__ = "training.renderer"


def touch(path: str) -> None:
    """An official-code-base function with a visible side effect, for the 'references are never called' test."""
    Path(path).write_text("called")


touch.__module__ = "training.renderer"


class CallsTouch:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (touch, (str(self.path),))


def _reconstruct_persistent_obj(meta: dict[str, Any]) -> Any:
    """What the real hook does first: exec the pickled module source (here: writes the marker file)."""
    exec(compile(meta["module_src"], "<module_src>", "exec"), {})  # only reached by the plain-pickle sanity test
    raise RuntimeError("module_src was executed")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


class Persistent:
    """Pickles like ``torch_utils.persistence.persistent_class``: meta with source and ``__dict__``, no class."""

    module_src: ClassVar[str] = ""

    def record_init(self, **kwargs: Any) -> None:
        self._init_args: tuple[Any, ...] = ()
        self._init_kwargs = kwargs

    def __reduce__(self) -> tuple[Any, ...]:
        state = object.__reduce__(self)[2]  # (copyreg._reconstructor, (cls, object, None), __dict__)
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=type(self).__name__, state=state)
        return (_reconstruct_persistent_obj, (meta,))


class Block(Persistent, torch.nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.record_init(width=width)
        self.fc = torch.nn.Linear(width, width)
        self.act = torch.nn.GELU()
        self.register_buffer("steps", torch.tensor(7, dtype=torch.int64))
        self.register_buffer("cache", torch.zeros(width), persistent=False)
        self.percent_dense = np.float64(0.25)  # numpy scalar attribute, as in the official PointGenerator


class Generator(Persistent, torch.nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        rendering_kwargs = EasyDict(custom_options=EasyDict(num_pts=5, res_end=64), box_warp=1.0)
        self.record_init(width=width, rendering_kwargs=rendering_kwargs)
        self.rendering_kwargs = rendering_kwargs
        self._xyz = torch.nn.Parameter(torch.randn(5, 3))
        self.blocks = torch.nn.ModuleList([Block(width), Block(width)])
        self.heads = torch.nn.ModuleDict({"xyz": torch.nn.Linear(width, 3), "color": torch.nn.Linear(width, 3, False)})
        self.skip = torch.nn.Identity()
        self.renderer = Renderer()
        self.register_buffer("dataset_label_std", torch.rand(25, dtype=torch.float64))


class Discriminator(Persistent, torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.record_init(c_dim=25)
        self.layers = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.LeakyReLU(0.2), torch.nn.Linear(4, 1))


class System:
    """Reduces to ``os.system(...)`` (``posix.system`` on Linux): must be refused wherever it sits."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned > pwned_marker",))


# --------------------------------------------------------------------------------------------------------------
# Fixtures.


@dataclass
class Official:
    data: dict[str, Any]
    tmp_path: Path
    marker: Path
    monkeypatch: pytest.MonkeyPatch

    def write(self, name: str = "network-snapshot-000000.pkl", pickler: Callable[..., Any] = pickle.dumps) -> Path:
        path = self.tmp_path / name
        path.write_bytes(pickler(self.data))
        return path


def _pickler_with(reduce: Callable[[Any], Any]) -> Callable[[Any], bytes]:
    """``pickle.dumps`` with ``reduce`` as its reducer_override (returning NotImplemented: pickle as usual)."""

    class Pickler(pickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            return reduce(obj)

    def dumps(data: Any) -> bytes:
        buffer = io.BytesIO()
        Pickler(buffer).dump(data)
        return buffer.getvalue()

    return dumps


def _install_fake_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    members = {
        "torch_utils.persistence": {"_reconstruct_persistent_obj": _reconstruct_persistent_obj},
        "dnnlib.util": {"EasyDict": EasyDict},
        "training.renderer": {"Renderer": Renderer, "inverse_sigmoid": inverse_sigmoid, "touch": touch},
    }
    for name in ("torch_utils", "dnnlib", "training", *members):
        module = types.ModuleType(name)
        for attr, value in members.get(name, {}).items():
            setattr(module, attr, value)
        monkeypatch.setitem(sys.modules, name, module)


@pytest.fixture
def official(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Official:
    """A snapshot dict shaped like the official training loop's, plus the marker its module_src would write."""
    monkeypatch.chdir(tmp_path)
    _install_fake_packages(monkeypatch)
    marker = tmp_path / "module_src_ran"
    monkeypatch.setattr(Persistent, "module_src", f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n")
    torch.manual_seed(0)
    G, G_ema, D = Generator(4), Generator(4).eval().requires_grad_(False), Discriminator()
    opt = torch.optim.Adam(G.parameters(), lr=2e-3, betas=(0.0, 0.99))
    sum(p.sum() for p in G.parameters()).backward()
    opt.step()
    data = {
        "training_set_kwargs": dict(EasyDict(class_name="training.dataset.ImageFolderDataset", resolution=512)),
        "G": G,
        "D": D,
        "G_ema": G_ema,
        "Gboth_opt": opt.state_dict(),
        "Gboth_interval": 1,
        "Gboth_module": G,  # the official loop stores each phase's module next to its optimizer
        "stats": EasyDict(array=np.arange(4, dtype=np.float32), scalar=np.float64(2.5), names=("a", "b")),
        "augment_pipe": None,
    }
    return Official(data=data, tmp_path=tmp_path, marker=marker, monkeypatch=monkeypatch)


def _assert_same_state_dict(got: dict[str, torch.Tensor], module: torch.nn.Module) -> None:
    want = module.state_dict()
    assert list(got) == list(want)
    for key, tensor in want.items():
        assert type(got[key]) is torch.Tensor and not got[key].requires_grad, key
        assert got[key].dtype == tensor.dtype and torch.equal(got[key], tensor), key


# --------------------------------------------------------------------------------------------------------------
# Reading.


def test_plain_pickle_would_execute_module_src(official: Official) -> None:
    """Sanity check of the fixture: the ordinary unpickler does run the embedded source."""
    payload = pickle.dumps(official.data)
    with pytest.raises(RuntimeError, match="module_src was executed"):
        pickle.loads(payload)
    assert official.marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_reads_networks_without_executing_anything(official: Official, protocol: int) -> None:
    path = official.write(pickler=lambda data: pickle.dumps(data, protocol=protocol))
    snap = read_official_snapshot(path)
    assert not official.marker.exists()
    assert list(snap.networks) == ["G", "D", "G_ema"]  # file order
    for key in ("G", "G_ema", "D"):
        _assert_same_state_dict(snap.networks[key], official.data[key])
    assert "blocks.0.cache" not in snap.networks["G"]  # non-persistent buffer
    assert snap.networks["G"]["blocks.1.steps"].dtype == torch.int64
    assert snap.class_names == {"G": "Generator", "G_ema": "Generator", "D": "Discriminator"}
    assert snap.aliases == {"Gboth_module": "G"}


def test_reads_without_the_official_packages(official: Official) -> None:
    path = official.write()
    official.monkeypatch.undo()  # drops the fake torch_utils / dnnlib / training modules
    assert "torch_utils.persistence" not in sys.modules and "dnnlib.util" not in sys.modules
    snap = read_official_snapshot(path)
    _assert_same_state_dict(snap.networks["G"], official.data["G"])
    assert "torch_utils" not in sys.modules and "training" not in sys.modules  # nothing was imported


def test_init_kwargs_optimizer_and_extras_are_plain(official: Official) -> None:
    snap = read_official_snapshot(official.write())
    rendering = {"custom_options": {"num_pts": 5, "res_end": 64}, "box_warp": 1.0}
    G_kwargs = {"width": 4, "rendering_kwargs": rendering}
    assert snap.init_kwargs == {"G": G_kwargs, "G_ema": G_kwargs, "D": {"c_dim": 25}}
    assert type(snap.init_kwargs["G"]["rendering_kwargs"]["custom_options"]) is dict  # EasyDict -> dict

    want = official.data["Gboth_opt"]
    got = snap.optimizers["Gboth_opt"]
    assert list(snap.optimizers) == ["Gboth_opt"] and got["param_groups"] == want["param_groups"]
    assert got["state"].keys() == want["state"].keys()
    for index, slots in want["state"].items():
        for name, value in slots.items():
            assert torch.equal(got["state"][index][name], value), (index, name)

    extras = snap.extras
    assert set(extras) == {"training_set_kwargs", "Gboth_interval", "stats", "augment_pipe"}
    assert extras["training_set_kwargs"] == {"class_name": "training.dataset.ImageFolderDataset", "resolution": 512}
    assert extras["Gboth_interval"] == 1 and extras["augment_pipe"] is None
    stats = extras["stats"]
    assert type(stats) is dict and stats["names"] == ("a", "b")
    assert isinstance(stats["array"], np.ndarray) and np.array_equal(stats["array"], np.arange(4, dtype=np.float32))
    assert type(stats["scalar"]) is float and stats["scalar"] == 2.5


def test_cuda_storages_load_on_cpu(official: Official) -> None:
    """The official loop pickles live CUDA networks: storage payloads name 'cuda:0' and must map to CPU."""

    def tag_cuda(obj: Any) -> Any:
        if not isinstance(obj, torch.TypedStorage):
            return NotImplemented
        rebuild, (payload,) = obj.__reduce__()
        assert payload.count(b"X\x03\x00\x00\x00cpu") == 1  # the location string of the legacy format
        return rebuild, (payload.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"),)

    path = official.write(pickler=_pickler_with(tag_cuda))
    assert b"cuda:0" in path.read_bytes()
    snap = read_official_snapshot(path)
    _assert_same_state_dict(snap.networks["D"], official.data["D"])


# --------------------------------------------------------------------------------------------------------------
# Refusals and malformed files.


def test_os_system_inside_a_network_is_refused(official: Official) -> None:
    official.data["G"].hook = System()
    path = official.write()
    with pytest.raises(UnsafePickleError, match=r"posix\.system") as info:
        read_official_snapshot(path)
    assert str(path) in str(info.value)
    assert not (official.tmp_path / "pwned_marker").exists() and not official.marker.exists()


@pytest.mark.parametrize(
    ("module", "name"),
    [("os", "system"), ("builtins", "eval"), ("builtins", "exec"), ("subprocess", "Popen"), ("builtins", "__import__")],
)
def test_dangerous_globals_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, name: str) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pkl"
    path.write_bytes(f"c{module}\n{name}\n(Vecho pwned > pwned_marker\ntR.".encode())  # protocol 0: f(arg)
    with pytest.raises(UnsafePickleError, match=rf"'{module}\.{name}'") as info:
        read_official_snapshot(path)
    assert str(path) in str(info.value)
    assert not (tmp_path / "pwned_marker").exists()


@pytest.mark.parametrize(
    "payload",
    [
        b"cbuiltins\ngetattr\n(ccollections\nOrderedDict\nVfromkeys\ntR.",  # getattr on a real class
        b"cbuiltins\ngetattr\n(ctraining.renderer\ninverse_sigmoid\nV__globals__\ntR.",  # dunder on a reference
        b"cbuiltins\ngetattr\n(Vstring\nVformat\ntR.",  # getattr on a plain value
    ],
)
def test_getattr_is_refused_except_on_inert_references(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "getattr.pkl"
    path.write_bytes(payload)
    with pytest.raises(UnsafePickleError, match="getattr") as info:
        read_official_snapshot(path)
    assert str(path) in str(info.value)


def test_function_references_stay_inert(official: Official) -> None:
    """``torch.exp`` (pickled via builtins.getattr) and official functions come back as names, never called."""
    called = official.tmp_path / "touched"
    official.data = {
        "G": official.data["G"],
        "act": torch.exp,
        "norm": torch.nn.functional.normalize,
        "inverse": inverse_sigmoid,
        "call": CallsTouch(called),
    }
    extras = read_official_snapshot(official.write()).extras
    assert not called.exists()
    assert extras["act"] == "torch._C._VariableFunctionsClass.exp"
    assert extras["norm"] == "torch.nn.functional.normalize"
    assert extras["inverse"] == "training.renderer.inverse_sigmoid"
    assert extras["call"] == {
        "__class__": "training.renderer.touch",
        "state": None,
        "args": (str(called),),
        "kwargs": {},
    }


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_official_snapshot(tmp_path / "absent.pkl")


def test_truncated_file(official: Official) -> None:
    path = official.write()
    payload = path.read_bytes()
    for cut in (1, len(payload) // 3, len(payload) - 1):
        path.write_bytes(payload[:cut])
        with pytest.raises(ValueError, match="not a readable pickle") as info:
            read_official_snapshot(path)
        assert str(path) in str(info.value) and not isinstance(info.value, UnsafePickleError)
    assert not official.marker.exists()


def test_not_a_pickle(tmp_path: Path) -> None:
    text = tmp_path / "notes.pkl"
    text.write_text("just some text\n")
    with pytest.raises(ValueError, match="not a readable pickle") as info:
        read_official_snapshot(text)
    assert str(text) in str(info.value)

    archive = tmp_path / "state.pt"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("archive/data.pkl", b"")
    with pytest.raises(ValueError, match=r"torch\.save zip archive") as info:
        read_official_snapshot(archive)
    assert str(archive) in str(info.value)


def test_top_level_must_be_a_dict_with_networks(tmp_path: Path) -> None:
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([torch.ones(2)]))
    with pytest.raises(ValueError, match="expected a dict") as info:
        read_official_snapshot(path)
    assert str(path) in str(info.value)

    path.write_bytes(pickle.dumps({"training_set_kwargs": {"resolution": 512}, "G_opt": None}))
    with pytest.raises(ValueError, match="no networks") as info:
        read_official_snapshot(path)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------------------------------------------
# Stand-ins stay private to their load; sizes are checked before memory is committed.

# Protocol-0 streams that BUILD onto a global's stand-in, then stop: with state ``(None, {...})`` pickle applies it
# with setattr, with ``{...}`` it writes the target's ``__dict__``. Either would outlive the load if allowed.
_BUILD_ON_STAND_INS = {
    # EasyDict.items = OrderedDict: every EasyDict of every later load would convert to {}
    "class": (b"cdnnlib.util\nEasyDict\n(N(dVitems\nccollections\nOrderedDict\nstb.", "dnnlib.util.EasyDict"),
    "function": (
        b"ctorch._utils\n_rebuild_tensor_v2\n(N(dV__defaults__\n(I1\ntstb.",
        "torch._utils._rebuild_tensor_v2",
    ),
    "type marker": (b"ctorch\nTensor\n(dVname\nVtorch.nn.Parameter\nsb.", "torch.Tensor"),
    "record type": (b"ctorch.nn.modules.linear\nLinear\n(dVforward\nI1\nsb.", "torch.nn.modules.linear.Linear"),
    "torch constant": (b"ctorch\nfloat32\n(dVis_signed\nI1\nsb.", "torch.float32"),
}


@pytest.mark.parametrize(("payload", "target"), _BUILD_ON_STAND_INS.values(), ids=_BUILD_ON_STAND_INS.keys())
def test_build_on_a_stand_in_is_refused_and_later_loads_are_unaffected(
    official: Official, payload: bytes, target: str
) -> None:
    evil = official.tmp_path / "evil.pkl"
    evil.write_bytes(payload)
    with pytest.raises(UnsafePickleError, match=rf"refusing BUILD on {re.escape(target)}:") as info:
        read_official_snapshot(evil)
    assert str(evil) in str(info.value) and "\n" not in str(info.value)

    snap = read_official_snapshot(official.write())
    for key in ("G", "G_ema", "D"):
        _assert_same_state_dict(snap.networks[key], official.data[key])
    rendering = {"custom_options": {"num_pts": 5, "res_end": 64}, "box_warp": 1.0}
    assert snap.init_kwargs["G"]["rendering_kwargs"] == rendering


class ResizesTensor:
    """A 2-element tensor, then BUILD((storage, 0, (1000,), (1,))): ``Tensor.__setstate__`` would ``set_`` it to 1000
    elements, growing the storage with uninitialised memory past every size check."""

    def __reduce__(self) -> tuple[Any, ...]:
        rebuild, args = torch.zeros(2).__reduce_ex__(2)
        return rebuild, args, (args[0], 0, (1000,), (1,))


def test_build_on_a_tensor_is_refused(official: Official) -> None:
    official.data["Gboth_interval"] = ResizesTensor()
    path = official.write()
    with pytest.raises(UnsafePickleError, match="refusing BUILD on a Tensor") as info:
        read_official_snapshot(path)
    assert str(path) in str(info.value)


def _shorter_storage(obj: Any) -> Any:
    """The 15-element storages (``_xyz`` of G and G_ema, its Adam moments) pickled with only 10 elements of data."""
    if not (isinstance(obj, torch.TypedStorage) and obj._size() == 15):
        return NotImplemented
    return torch.zeros(10, dtype=obj.dtype).__reduce_ex__(2)[1][0].__reduce__()


def _xyz_view(field: int, value: Any) -> Callable[[Any], Any]:
    """Rebuild arguments of the (5, 3) ``_xyz`` tensors with one of (storage, offset, size, stride) replaced."""

    def reduce(obj: Any) -> Any:
        if type(obj) is not torch.Tensor or obj.shape != (5, 3):
            return NotImplemented
        rebuild, args = obj.__reduce_ex__(2)
        assert rebuild is torch._utils._rebuild_tensor_v2
        return rebuild, (*args[:field], value, *args[field + 1 :])

    return reduce


@pytest.mark.parametrize(
    ("reduce", "needs", "holds"),
    [
        (_shorter_storage, 60, 40),  # the storage lost its last 5 elements
        (_xyz_view(1, 1), 64, 60),  # offset 1
        (_xyz_view(2, (6, 3)), 72, 60),  # one row more
        (_xyz_view(3, (4, 1)), 76, 60),  # rows 4 elements apart
    ],
    ids=["truncated storage", "offset", "size", "stride"],
)
def test_tensor_reaching_past_its_storage_is_refused(
    official: Official, reduce: Callable[[Any], Any], needs: int, holds: int
) -> None:
    path = official.write(pickler=_pickler_with(reduce))
    pattern = rf"torch\.float32 tensor of size .* needs {needs} bytes of storage #\d+, which holds only {holds} bytes"
    with pytest.raises(ValueError, match=pattern) as info:
        read_official_snapshot(path)
    assert str(path) in str(info.value) and not isinstance(info.value, UnsafePickleError)


def test_allocation_caps(official: Official) -> None:
    """The fixture's largest storage is dataset_label_std (25 float64 = 200 bytes); all of it takes a few KB."""
    path = official.write()
    per_storage = r"storage #\d+ takes 200 bytes, over the cap of 199 bytes per storage"
    with pytest.raises(ValueError, match=per_storage) as info:
        read_official_snapshot(path, max_storage_bytes=199)
    assert str(path) in str(info.value)
    with pytest.raises(ValueError, match=r"over the cap of 1000 bytes in total") as info:
        read_official_snapshot(path, max_total_bytes=1000)
    assert str(path) in str(info.value)

    official.monkeypatch.setattr(official_module, "MAX_TOTAL_BYTES", 1000)  # the default, read at call time
    with pytest.raises(ValueError, match=r"over the cap of 1000 bytes in total"):
        read_official_snapshot(path)
    snap = read_official_snapshot(path, max_storage_bytes=200, max_total_bytes=1 << 20)
    _assert_same_state_dict(snap.networks["G"], official.data["G"])


def test_declared_storage_size_is_checked_before_torch_allocates_it(official: Official) -> None:
    """A storage record declaring 2**31 - 1 floats (8 GiB) over 60 bytes of data: torch.load would reserve the
    8 GiB before finding the data short."""

    def inflate(obj: Any) -> Any:
        if not (isinstance(obj, torch.TypedStorage) and obj._size() == 15):
            return NotImplemented
        rebuild, (payload,) = obj.__reduce__()
        assert payload.count(b"K\x0fNt") == 1  # numel 15 (BININT1), no view metadata, end of the record tuple
        return rebuild, (payload.replace(b"K\x0fNt", b"J\xff\xff\xff\x7fNt"),)

    path = official.write(pickler=_pickler_with(inflate))
    declared = r"storage #\d+ declares 8589934588 bytes but its payload holds only \d+ bytes"
    with pytest.raises(ValueError, match=declared) as info:
        read_official_snapshot(path)
    assert str(path) in str(info.value)


class HugeObjectArray:
    """numpy's own pickle of an object array, claiming 10**12 elements for one item: numpy allocates the 8 TB first."""

    def __reduce__(self) -> tuple[Any, ...]:
        reconstruct, args, _ = np.empty(0, dtype=object).__reduce__()
        return reconstruct, args, (1, (10**12,), np.dtype(object), False, [1])


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(I1000000000000\ntVb\ntR.", "a numpy array takes"),
        (pickle.dumps(HugeObjectArray(), protocol=2), "a numpy array takes 8000000000000 bytes"),
        (b"c__builtin__\nbytes\n(I1000000000000\ntR.", r"refusing builtins\.bytes\(<number>\)"),
        (b"\x80\x04\x8e" + (1 << 40).to_bytes(8, "little") + b".", r"truncated \(1099511627776 bytes announced"),
        (b"\x80\x05\x96" + (1 << 40).to_bytes(8, "little") + b".", r"truncated \(1099511627776 bytes announced"),
    ],
    ids=["numpy shape", "numpy object array state", "bytes(n)", "BINBYTES8", "BYTEARRAY8"],
)
def test_sizes_from_the_stream_are_checked_before_allocating(tmp_path: Path, payload: bytes, error: str) -> None:
    path = tmp_path / "big.pkl"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=error) as info:
        read_official_snapshot(path)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------------------------------------------
# Generator revision.


def _generator_state_dict(levels: int, revision: str, level7_width: int | None = None) -> dict[str, torch.Tensor]:
    """Official key layout, reduced to what detection looks at (one tensor per registration point)."""
    blocks = ["first_layers", "resblocks"] if revision == "v2" else ["resblocks", "first_layers"]
    sd = {"_xyz": torch.zeros(1, 3), "point_gen.conv_in.const_pe.const_pe": torch.zeros(1)}
    sd |= {f"point_gen.transformer.{name}.0.ln_1.gamma.weight": torch.zeros(1) for name in blocks}
    for i in range(levels):
        width = max(16, 512 >> i) if i < 7 else (level7_width or (16 if revision == "v1" else 8))
        sd[f"point_gen.upsample_layers.{i}.subpixel.weight"] = torch.zeros(1)
        if width != 512:
            sd[f"point_gen.upsample_layers.{i}.res_fc.weight"] = torch.zeros(width, 512)
    return sd


@pytest.mark.parametrize(
    ("levels", "revision", "resolution"),
    [(6, "v1", 512), (6, "v2", 512), (7, "v1", 1024), (8, "v1", 2048), (8, "v2", 2048)],
)
def test_detect_generator_config(levels: int, revision: str, resolution: int) -> None:
    config = detect_generator_config(_generator_state_dict(levels, revision))
    assert config == {"resolution": resolution, "revision": revision}


def test_detect_generator_config_rejects_inconsistent_or_foreign_state_dicts() -> None:
    with pytest.raises(ValueError, match="inconsistent"):
        detect_generator_config(_generator_state_dict(8, "v1", level7_width=8))
    with pytest.raises(ValueError, match="upsample_layers"):
        detect_generator_config({"mapping.fc0.weight": torch.zeros(1)})
