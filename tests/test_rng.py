"""The Philox stream is the same function in torch, C++ and Triton (and equals tl.randint)."""
import pytest
import torch

import fastdenoise
from fastdenoise import _rng
from fastdenoise._runtime import HAS_TRITON
from fastdenoise._runtime import interpreting

# The skipifs below fire only in a partial dev environment: CI builds the extension and installs Triton,
# and with FASTDENOISE_REQUIRE_EXT=1 tests/test_build.py fails when the extension is missing.
SEEDS = [0, 1, 12345, 2**32 + 7, 2**63 - 1]
COUNTERS = torch.cat([torch.arange(0, 300), torch.tensor([2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40 + 3])])


@pytest.mark.skipif(not fastdenoise.HAS_EXT, reason="C++ extension not built")
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("stream", [0, 1, 77])
def test_cpp_matches_reference(seed, stream):
    from fastdenoise._ext import _C

    assert torch.equal(_C.philox(seed, COUNTERS, stream), _rng.philox(seed, COUNTERS, stream))


def test_packed_is_the_four_words_in_order():
    c = torch.arange(50)
    blocks = torch.stack(_rng.philox4(7, c, 2), -1).reshape(-1)  # c0..c3 of counter 0, then 1, ...
    assert torch.equal(_rng.packed(7, torch.arange(200), 2), blocks)
    assert torch.equal(_rng.philox4(7, c, 2)[0], _rng.philox(7, c, 2))


@pytest.mark.skipif(not fastdenoise.HAS_EXT, reason="C++ extension not built")
@pytest.mark.parametrize("seed", SEEDS)
def test_cpp_packed_matches_reference(seed):
    """Every alignment of the start and every length class (AVX2 blocks of 32 words, scalar tails)."""
    from fastdenoise._ext import _C

    for start in (0, 1, 2, 3, 5, 31, 4 * 2**30 + 1, 2**34 + 2):
        for n in (0, 1, 3, 4, 31, 32, 33, 67, 100):
            want = _rng.packed(seed, torch.arange(start, start + n), 1)
            assert torch.equal(_C.philox_packed(seed, start, n, 1), want), (start, n)


TRITON_OK = HAS_TRITON and (torch.cuda.is_available() or interpreting())
if TRITON_OK:
    import triton
    import triton.language as tl

    from fastdenoise._triton_rng import packed
    from fastdenoise._triton_rng import philox

    @triton.jit
    def _packed_kernel(idx_ptr, out_ptr, n, lo, hi, stream, BLOCK: tl.constexpr):
        offs = tl.arange(0, BLOCK)
        m = offs < n
        i = tl.load(idx_ptr + offs, mask=m)
        tl.store(out_ptr + offs, packed(lo, hi, i, stream).to(tl.int64), mask=m)

    @triton.jit
    def _philox_kernel(cnt_ptr, out_ptr, ref_ptr, n, lo, hi, stream, BLOCK: tl.constexpr):
        offs = tl.arange(0, BLOCK)
        m = offs < n
        c = tl.load(cnt_ptr + offs, mask=m)
        tl.store(out_ptr + offs, philox(lo, hi, c, stream).to(tl.int64), mask=m)
        seed = (hi.to(tl.uint64) << 32) | lo.to(tl.uint64)
        tl.store(ref_ptr + offs, tl.randint(seed, c.to(tl.uint32)).to(tl.uint32).to(tl.int64), mask=m)


@pytest.mark.skipif(not TRITON_OK, reason="no Triton runtime")
@pytest.mark.parametrize("seed", SEEDS)
def test_triton_matches_reference_and_tl_randint(seed):
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    cnt = COUNTERS.to(dev)
    for stream in (0, 5):
        out, ref = torch.empty_like(cnt), torch.empty_like(cnt)
        _philox_kernel[(1,)](cnt, out, ref, cnt.numel(), seed & 0xFFFFFFFF, seed >> 32, stream, BLOCK=512)
        assert torch.equal(out.cpu(), _rng.philox(seed, COUNTERS, stream))
    small = COUNTERS < 2**32
    assert torch.equal(ref.cpu()[small], _rng.philox(seed, COUNTERS[small], 0))


@pytest.mark.skipif(not TRITON_OK, reason="no Triton runtime")
@pytest.mark.parametrize("seed", SEEDS)
def test_triton_packed_matches_reference(seed):
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    idx = torch.cat([torch.arange(0, 300), torch.tensor([2**33 + 1, 2**33 + 2, 2**40 + 3])])
    out = torch.empty_like(idx, device=dev)
    _packed_kernel[(1,)](idx.to(dev), out, idx.numel(), seed & 0xFFFFFFFF, seed >> 32, 3, BLOCK=512)
    assert torch.equal(out.cpu(), _rng.packed(seed, idx, 3))


def test_choice_and_uniform_ranges():
    w = _rng.philox(3, torch.arange(100000))
    assert int(w.min()) >= 0 and int(w.max()) < 2**32
    c = _rng.choice(w, 72)
    assert int(c.min()) == 0 and int(c.max()) == 71
    u = _rng.uniform(w)
    assert u.dtype == torch.float32 and 0 <= float(u.min()) and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.01


def test_normal_host_moments_and_determinism():
    z = _rng.normal_host(9, 200001)
    assert z.shape == (200001,)
    assert abs(float(z.mean())) < 4 / 200001**0.5 * 1.0 + 1e-3
    assert abs(float(z.std()) - 1) < 0.01
    assert torch.equal(z, _rng.normal_host(9, 200001)) and not torch.equal(z, _rng.normal_host(10, 200001))


def test_seed_validation():
    with pytest.raises(ValueError, match="seed must be"):
        _rng.philox(-1, torch.arange(3))
