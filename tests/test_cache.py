import pytest

from cgsgan.data import HeadsDataset
from cgsgan.data.cache import cache_dir, default_dataset
from cgsgan.synthetic import dataset as synth_module


def test_default_dataset_is_generated_once_and_loads(tmp_path):
    path = default_dataset(resolution=16, count=4, root=tmp_path, progress=False)
    assert path.parent == tmp_path and "r16-n4-s0" in path.name
    stamp = (path / "dataset.json").stat().st_mtime_ns
    assert default_dataset(resolution=16, count=4, root=tmp_path, progress=False) == path
    assert (path / "dataset.json").stat().st_mtime_ns == stamp  # reused, not regenerated
    data = HeadsDataset(path)
    assert len(data) == 4 and data.resolution == 16
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_an_interrupted_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    def interrupted(out, **kwargs):
        (out / "mask").mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(synth_module, "synthesize_dataset", interrupted)
    with pytest.raises(KeyboardInterrupt):
        default_dataset(resolution=16, count=4, root=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CGSGAN_CACHE", str(tmp_path / "a"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.delenv("CGSGAN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert cache_dir() == tmp_path / "b" / "cgsgan"
