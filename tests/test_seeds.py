import pytest
import torch

from cgsgan.seeds import stream


def draw(*args) -> torch.Tensor:
    return torch.randn(4, generator=stream(*args))


def test_streams_differ_by_every_key_and_repeat():
    assert torch.equal(draw("a", 1, 2, 3), draw("a", 1, 2, 3))
    keys = [("a", 0, 0, 0), ("a", 1, 0, 0), ("a", 0, 1, 0), ("a", 0, 0, 1), ("a", 2**40, 0, 0), ("a", 0, 256, 0),
            ("a", 0, 0), ("a", 0, 0, 0, 0), ("b", 0, 0, 0)]  # fmt: skip
    seen = [draw(*k) for k in keys]
    for i in range(len(seen)):
        for j in range(i):
            assert not torch.equal(seen[i], seen[j]), (keys[i], keys[j])


def test_torch_keeps_only_32_bits_of_a_seed():
    # Why streams hash their keys: this is what packing keys by shifts ran into.
    a = torch.randn(3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, torch.randn(3, generator=torch.Generator().manual_seed(2**32 + 5)))


def test_keys_out_of_range_are_refused():
    with pytest.raises(ValueError, match="stream keys"):
        stream("a", 1, -1)
    with pytest.raises(ValueError, match="stream keys"):
        stream("a", 2**64)
