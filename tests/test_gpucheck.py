"""The GPU compile check on a CPU machine: every Triton kernel compiles for sm_80 and sm_90 without
spills, and every bit-identity claim holds in the compiled code (the CI subset, about a minute)."""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest

triton = pytest.importorskip("triton")

from tools import gpucheck  # noqa: E402

pytestmark = pytest.mark.cpu_only("compiles kernels for GPU targets with the Triton on this machine")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OP_MODULES = ["apr", "blind2grad", "blindspot", "neighbor", "noise2same", "p2n", "recharge", "zsn2n"]
HAS_TOOLS = os.path.exists(gpucheck._tool("cuobjdump"))


def _kernels() -> set[str]:
    out = set()
    for op in OP_MODULES:
        mod = importlib.import_module(f"fastdenoise.ops.{op}.triton")
        out |= {k for k in vars(mod) if k.startswith("_") and k.endswith("_kernel")}
    return out


@pytest.fixture(scope="module")
def ci_result(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpucheck") / "ci.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-m", "tools.gpucheck", "--subset", "ci", "--arch", "sm_80,sm_90",
                           "--jobs", "2", "--json", str(path)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    return proc, (json.loads(path.read_text()) if path.exists() else None)


@pytest.mark.skipif(not HAS_TOOLS, reason="the triton wheel ships no NVIDIA tools here")
def test_compile_check_ci_subset_passes(ci_result):
    """Exit 0, one record per kernel and arch with the required fields, zero spills, and every kernel
    claimed bit-identical compiled without any fma (PTX and SASS)."""
    proc, res = ci_result
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    kernels = _kernels()
    assert {(r["kernel"], r["arch"]) for r in res["records"]} == {(k, a) for k in kernels for a in ("sm_80", "sm_90")}
    for r in res["records"]:
        for field in ("kernel", "arch", "ok", "regs", "spills", "fma", "bit_identical", "widths", "occupancy"):
            assert field in r, (field, r)
        assert r["ok"] and r["spills"] == 0 and r["regs"] > 0
        if r["claim"] == "bit-identical":
            assert r["bit_identical"] and r["fma"] == 0 and not r["fp_fusion"], r
        else:
            assert r["claim"] and not r["bit_identical"]


def test_every_kernel_has_a_claim():
    """Each kernel is marked bit-identical or states its tolerance (_triton_util decorators)."""
    from fastdenoise import _triton_util

    missing = _kernels() - set(_triton_util.CLAIMS)
    assert not missing, missing


def test_sass_parsers():
    """Load/store widths and the fma count read the SASS forms ptxas emits; the constant-load idiom
    HFMA2.MMA Rd, -RZ, RZ is not an fma."""
    sass = """
        /*0100*/  @!P0 LDG.E.128 R4, desc[UR4][R2.64] ;
        /*0110*/  LDG.E R9, desc[UR4][R6.64+0x4] ;
        /*0120*/  LDG.E.U16 R1, desc[UR4][R6.64] ;
        /*0130*/  STG.E.64 desc[UR4][R2.64], R4 ;
        /*0140*/  FFMA R1, R2, R3, R4 ;
        /*0150*/  HFMA2.MMA R6, -RZ, RZ, 0, 0 ;
    """
    assert gpucheck._widths(sass) == {"ld": {"128": 1, "32": 1, "16": 1}, "st": {"64": 1}}
    assert len(gpucheck._SASS_FMA.findall(sass)) == 1
    assert gpucheck._occupancy(90, 32, 4, 0) == 1.0
    assert gpucheck._occupancy(90, 255, 4, 0) == 0.125
