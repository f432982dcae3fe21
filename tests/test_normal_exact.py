"""The exactly reproducible normal transform: torch reference and Triton kernel bit-identical, within a
few float64 ulps of the libm Box-Muller of normal_host, and standard normal in law."""
from __future__ import annotations

import pytest
import torch

from fastdenoise import _rng
from fastdenoise._runtime import HAS_TRITON
from fastdenoise._runtime import interpreting

TRITON_OK = HAS_TRITON and (torch.cuda.is_available() or interpreting())
DEV = "cuda" if torch.cuda.is_available() else "cpu"

EDGE_WORDS = [0, 1, 2**29 - 1, 2**29, 2**30 - 1, 2**30, 2**31, 3 * 2**30 + 2**29, 2**32 - 2, 2**32 - 1]

if TRITON_OK:
    import triton
    import triton.language as tl

    from fastdenoise._triton_rng import box_muller_exact
    from fastdenoise._triton_rng import normal_exact
    from fastdenoise._triton_util import EXACT

    @triton.jit
    def _bm_kernel(w0_ptr, w1_ptr, c_ptr, s_ptr, N, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = i < N
        w0 = tl.load(w0_ptr + i, mask=m, other=0).to(tl.uint32)
        w1 = tl.load(w1_ptr + i, mask=m, other=0).to(tl.uint32)
        c, s = box_muller_exact(w0, w1)
        tl.store(c_ptr + i, c, mask=m)
        tl.store(s_ptr + i, s, mask=m)

    @triton.jit
    def _normal_kernel(o_ptr, N, seed_lo, seed_hi, stream, BLOCK: tl.constexpr):
        i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        tl.store(o_ptr + i, normal_exact(seed_lo, seed_hi, i, stream), mask=i < N)


@pytest.mark.skipif(not TRITON_OK, reason="needs CUDA or TRITON_INTERPRET=1")
def test_triton_box_muller_bit_identical_to_reference():
    """Edge words (u1 = 1, the smallest u1, every quadrant boundary) and random words."""
    g = torch.Generator().manual_seed(0)
    w0 = torch.tensor(EDGE_WORDS * len(EDGE_WORDS) + torch.randint(0, 2**32, (2000,), generator=g).tolist())
    w1 = torch.tensor([b for b in EDGE_WORDS for _ in EDGE_WORDS] + torch.randint(0, 2**32, (2000,), generator=g).tolist())
    c = torch.empty(len(w0), dtype=torch.float64, device=DEV)
    s = torch.empty_like(c)
    _bm_kernel[(triton.cdiv(len(w0), 256),)](w0.to(DEV), w1.to(DEV), c, s, len(w0), BLOCK=256, **EXACT)
    rc, rs = _rng.box_muller_exact(w0, w1)
    assert torch.equal(c.cpu(), rc) and torch.equal(s.cpu(), rs)


@pytest.mark.skipif(not TRITON_OK, reason="needs CUDA or TRITON_INTERPRET=1")
def test_triton_normal_bit_identical_to_reference():
    n = 3001
    out = torch.empty(n, dtype=torch.float64, device=DEV)
    seed = 0x123456789AB
    _normal_kernel[(triton.cdiv(n, 512),)](out, n, seed & 0xFFFFFFFF, seed >> 32, 2, BLOCK=512, **EXACT)
    assert torch.equal(out.cpu(), _rng.normal_exact(seed, torch.arange(n), 2))


def test_close_to_libm_box_muller():
    """Same layout as normal_host and within a few float64 ulps of it: identical once rounded to
    float32 (the scales and replacement values the ops use)."""
    n = 200_000
    a = _rng.normal_exact(5, torch.arange(n), 2)
    b = _rng.normal_host(5, n, 2, dtype=torch.float64)
    assert (a - b).abs().max() < 1e-14
    for sigma in (0.75, 0.2, 0.1):
        assert torch.equal((1.0 + sigma * a).float(), (1.0 + sigma * b).float())
        assert torch.equal((sigma * a).float(), (sigma * b).float())


def test_moments():
    z = _rng.normal_exact(9, torch.arange(200_001))
    n = z.numel()
    assert abs(z.mean()) < 4 / n**0.5
    assert abs(z.var() - 1) < 4 * (2 / n) ** 0.5
    assert abs((z**3).mean()) < 4 * (15 / n) ** 0.5
    assert torch.equal(_rng.normal_exact(9, torch.arange(5, 9)), z[5:9])
