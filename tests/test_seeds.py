import pytest
import torch

from cgsgan.seeds import stream


def test_streams_differ_by_every_key_and_repeat():
    draw = lambda *keys: torch.randn(4, generator=stream(*keys))  # noqa: E731
    assert torch.equal(draw(1, 2, 3), draw(1, 2, 3))
    seen = [draw(*k) for k in [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (2**40, 0, 0), (0, 2**40, 0)]]
    for i in range(len(seen)):
        for j in range(i):
            assert not torch.equal(seen[i], seen[j])


def test_torch_keeps_only_32_bits_of_a_seed():
    # Why streams hash their keys: this is what packing keys by shifts ran into.
    a = torch.randn(3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, torch.randn(3, generator=torch.Generator().manual_seed(2**32 + 5)))


def test_negative_keys_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        stream(1, -1)
