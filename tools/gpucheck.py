"""Compile check of every Triton kernel for real NVIDIA GPUs, on any machine (no GPU needed).

``python -m tools.gpucheck --arch sm_80,sm_90 --json PATH`` does two things:

1. *Record*: in a subprocess with ``TRITON_INTERPRET=1`` it runs a representative set of calls of every
   public fused op (forward and backward; float32/float16/bfloat16, float64 on small shapes; every
   option that changes a constexpr; shapes from 1x1x5x7 to 8x3x1024x1024) on the Triton backend. The
   interpreter's launch is replaced by a recorder, so no kernel runs (big shapes cost only their
   allocations) and launchers choose the tiles they choose for CUDA tensors (``_triton_util.cuda_tiles``).
2. *Compile*: for each recorded specialization (Triton's own binder computes it from the recorded
   arguments: dtypes, 16-byte alignment, integers equal to 1 or divisible by 16, constexprs, launch
   options) and each architecture, ``triton.compile`` builds the cubin. ``ptxas -v`` gives registers,
   spills, stack and shared memory; the SASS (``cuobjdump -sass``) gives the widths of the global loads
   and stores and the FFMA count; the PTX gives the fma count. ``bit_identical`` holds for a kernel
   claimed bit-identical (``_triton_util.bit_identical``) when it was launched with ``EXACT`` and its PTX
   holds no fma (SASS FMAs of such kernels are ptxas's IEEE-exact div.rn/sqrt.rn and integer-division
   expansions; see :func:`compile_one`).

Exit status 1 when a kernel fails to compile, spills, or breaks its bit-identity claim.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import importlib
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # the repository root

SHAPES_SMALL = [(1, 1, 5, 7), (2, 3, 33, 47), (4, 3, 256, 256)]
SHAPES_BIG = [(1, 3, 1024, 1024), (8, 3, 1024, 1024)]
ARCH_LIMITS = {  # per SM: registers, max warps, max blocks, shared memory usable by blocks (bytes)
    80: (65536, 64, 32, 164 * 1024),
    90: (65536, 64, 32, 228 * 1024),
}


# ----------------------------------------------------------------------------------------------
# 1. record (runs under TRITON_INTERPRET=1)


def _describe(v):
    import torch
    import triton.language as tl

    if isinstance(v, torch.Tensor):
        from torch._subclasses.fake_tensor import FakeTensor

        # a FakeTensor (tools.hostwork) has no data pointer: fresh CUDA buffers are 512-byte aligned
        ptr = None if isinstance(v, FakeTensor) else v.data_ptr()
        align = ptr % 16 == 0 if ptr is not None else (v.storage_offset() * v.element_size()) % 16 == 0
        return {"kind": "tensor", "dtype": str(v.dtype).replace("torch.", ""), "align16": align,
                "bytes": v.numel() * v.element_size(), "ptr": ptr}
    if isinstance(v, bool):
        return {"kind": "bool", "value": v}
    if isinstance(v, int):
        return {"kind": "int", "value": v}
    if isinstance(v, float):
        return {"kind": "float", "value": v}
    if isinstance(v, tl.dtype):
        return {"kind": "tl_dtype", "value": str(v)}
    if v is None:
        return {"kind": "none"}
    raise TypeError(f"cannot record a kernel argument of type {type(v).__name__}")


class Recorder:
    """Replaces the interpreter's launch: records (kernel, arguments, options, grid), runs nothing."""

    def __init__(self):
        self.launches: list[dict] = []
        self.label = ""

    def __enter__(self):
        from triton.runtime import interpreter

        from fastdenoise import _triton_util

        self._orig = interpreter.InterpretedFunction.run
        rec = self

        def run(fn_self, *args, grid, warmup, **kwargs):
            fn = fn_self.fn
            names = list(inspect.signature(fn).parameters)
            params = dict(zip(names, args))
            opts = {k: v for k, v in kwargs.items() if k not in names}
            params.update({k: v for k, v in kwargs.items() if k in names})
            g = grid(params) if callable(grid) else grid
            rec.launches.append({
                "kernel": fn.__name__, "module": fn.__module__, "call": rec.label,
                "params": {k: _describe(params[k]) for k in names if k in params},
                "options": opts, "grid": [int(x) for x in g],
            })
            return None

        interpreter.InterpretedFunction.run = run
        _triton_util._PRETEND_CUDA = True
        return self

    def __exit__(self, *exc):
        from triton.runtime import interpreter

        from fastdenoise import _triton_util

        interpreter.InterpretedFunction.run = self._orig
        _triton_util._PRETEND_CUDA = False


def _fwd_bwd(out, *inputs):
    """Backward of the sum of ``out`` (tensor or tuple), so every backward kernel launches."""
    import torch

    outs = [o for o in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(o, torch.Tensor)
            and o.requires_grad]
    if outs:
        torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])


def workloads(shapes, dtypes):
    """Yields (label, thunk) of every representative call: each public fused op, forward and backward.
    A thunk reads the loop's current shape and dtype: call it before advancing the generator."""
    import torch

    import fastdenoise.functional as F

    T = "triton"

    def inp(shape, dt, grad=False):
        return torch.rand(shape, dtype=dt).requires_grad_(grad)

    for shape in shapes:
        b, c, h, w = shape
        for dt in dtypes:
            if dt == torch.float64 and h * w > 2048:
                continue
            tag = f"{'x'.join(map(str, shape))}/{str(dt).replace('torch.', '')}"
            pending = []

            def add(name, fn, pending=pending, tag=tag):
                pending.append((f"{name}/{tag}", fn))

            for need_h2 in (True, False):
                add(f"apr_sample(need_h2={need_h2})", lambda need_h2=need_h2: _fwd_bwd(
                    F.apr_sample(inp(shape, dt, True), 3, need_h2=need_h2, backend=T)))
            for gtr in (False, True):
                add(f"apr_loss(grad_through_reg={gtr})", lambda gtr=gtr: _fwd_bwd(F.apr_loss(
                    inp(shape, dt, True), inp(shape, dt), inp(shape, dt, gtr), 3, grad_through_reg=gtr, backend=T)))
            add("dual_mask", lambda: F.dual_mask(inp(shape, dt), inp(shape, dt), 3, backend=T))
            for grad_on in ("all", "masked"):
                for detach in (True, False):
                    add(f"blind2grad_loss({grad_on},detach_full={detach})", lambda g=grad_on, d=detach: _fwd_bwd(
                        F.blind2grad_loss(inp(shape, dt, True), inp(shape, dt, not d), inp(shape, dt),
                                          inp((b, 1, h, w), dt), grad_on=g, detach_full=d, backend=T)))
            if h >= 2 and w >= 2:
                for d in ("down", "up", "right", "left"):
                    add(f"shifted_max_pool2d({d})", lambda d=d: _fwd_bwd(
                        F.shifted_max_pool2d(inp(shape, dt, True), d, backend=T)))
                add("neighbor_subsample", lambda: _fwd_bwd(F.neighbor_subsample(inp(shape, dt, True), 3, backend=T)))
                hh, wh = h // 2, w // 2
                add("nb2nb_loss", lambda: _fwd_bwd(F.nb2nb_loss(
                    inp((b, c, hh, wh), dt, True), inp(shape, dt), inp(shape, dt), 3, backend=T)))
                add("pair_downsample", lambda: _fwd_bwd(F.pair_downsample(inp(shape, dt, True), backend=T)))
                add("zsn2n_loss", lambda: _fwd_bwd(F.zsn2n_loss(
                    inp(shape, dt), inp(shape, dt, True), inp((b, c, hh, wh), dt, True), inp((b, c, hh, wh), dt, True),
                    backend=T)))
            for rep in ("gaussian", "donut"):
                add(f"stratified_mask({rep})", lambda rep=rep: _fwd_bwd(
                    F.stratified_mask(inp(shape, dt, True), 3, replace=rep, backend=T)))
            add("noise2same_loss", lambda: _fwd_bwd(F.noise2same_loss(
                inp(shape, dt, True), inp(shape, dt, True), inp(shape, dt), inp(shape, dt), backend=T)))
            grans = ("image", "batch", "pixel") if h * w <= 256 * 256 else ("image", "batch")
            for gran in grans:
                for clamp in (False, True):
                    add(f"rdc_renoise({gran},clamp={clamp})", lambda g=gran, cl=clamp: _fwd_bwd(F.rdc_renoise(
                        inp(shape, dt, True), inp(shape, dt, True), 3, 0.75, g, detach=False, clamp=cl, backend=T)[0]))
            add("rdc_renoise(detach)", lambda: _fwd_bwd(F.rdc_renoise(
                inp(shape, dt, True), inp(shape, dt), 3, backend=T)[0]))
            add("p2n_loss", lambda: _fwd_bwd(F.p2n_loss(inp(shape, dt, True), inp(shape, dt, True), 1.7, backend=T)))
            add("recharge_l1_loss", lambda: _fwd_bwd(F.recharge_l1_loss(
                inp(shape, dt, True), inp(shape, dt), inp((3, *shape), dt), 3, backend=T)))
            yield from pending


def record(subset: str) -> list[dict]:
    """Run the workloads with the recorder (call under TRITON_INTERPRET=1)."""
    import torch

    if os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("record() runs under TRITON_INTERPRET=1 (use main())")
    shapes = SHAPES_SMALL + ([] if subset == "ci" else SHAPES_BIG)
    dtypes = [torch.float32] if subset == "ci" else [torch.float32, torch.float16, torch.bfloat16, torch.float64]
    rec = Recorder()
    with rec:
        for label, fn in workloads(shapes, dtypes):
            rec.label = label
            fn()
    return rec.launches


# ----------------------------------------------------------------------------------------------
# 2. specialise and compile (runs without the interpreter)


class _Ptr:
    """A stand-in pointer argument for Triton's binder: dtype and 16-byte alignment only."""

    def __init__(self, dtype, align16: bool):
        self.dtype, self._align16 = dtype, align16

    def data_ptr(self):
        return 0 if self._align16 else 4


def _kernel_fn(launch):
    return getattr(importlib.import_module(launch["module"]), launch["kernel"])


def _arg(d):
    import torch
    import triton.language as tl

    kind = d["kind"]
    if kind == "tensor":
        return _Ptr(getattr(torch, d["dtype"]), d["align16"])
    if kind == "tl_dtype":
        return tl.dtype(d["value"])
    return None if kind == "none" else d["value"]


def _binder(fn, capability: int):
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    backend = make_backend(GPUTarget("cuda", capability, 32))
    return backend, create_function_from_signature(fn.signature, fn.params, backend)


def specialize(launch, capability: int):
    """(signature, constexprs, attrs, options dict, key string) exactly as Triton's launcher computes them."""
    fn = _kernel_fn(launch)
    backend, binder = _binder(fn, capability)
    args = {k: _arg(v) for k, v in launch["params"].items()}
    bound, spec, opts = binder(**args, **launch["options"])
    options, signature, constexprs, attrs = fn._pack_args(backend, opts, bound, spec, opts)
    parts = []
    for name, (ty, sp) in zip(signature, spec):
        parts.append(f"{name}={sp}" if ty == "constexpr" else f"{name}:{ty}{':' + sp if sp else ''}")
    key = f"{launch['kernel']}[{', '.join(parts)}]{'' if options.enable_fp_fusion else ' exact'}"
    return signature, constexprs, attrs, dict(launch["options"]), key


def _tool(name: str) -> str:
    import triton.backends.nvidia as nv

    return os.path.join(os.path.dirname(nv.__file__), "bin", name)


def _ptxas(capability: int) -> str:
    """The ptxas Triton itself uses for this target (3.9 picks its newer one from sm_90 on)."""
    from triton.backends.nvidia import compiler as nvc

    try:
        tool = nvc.get_ptxas(capability)
    except TypeError:  # older Triton: no argument
        tool = nvc.get_ptxas()
    if isinstance(tool, tuple):
        return tool[0]
    return getattr(tool, "path", tool)


# FFMA/DFMA/HFMA2 on values; ``HFMA2.MMA Rd, -RZ, RZ, imm, imm`` is ptxas's idiom for loading a constant.
_SASS_FMA = re.compile(r"\b(?:FFMA|DFMA|HFMA2)(?:\.[A-Z0-9_]+)* R\d+, (?!-RZ, RZ,)")
_LD = re.compile(r"\b(LDG|STG)\.E((?:\.[A-Z0-9_]+)*)")


def _widths(sass: str) -> dict:
    """Histogram of global load/store widths in bits from the SASS, e.g. {"ld": {"32": 4, "128": 2}}."""
    out = {"ld": {}, "st": {}}
    for op, mods in _LD.findall(sass):
        bits = 32
        for m in mods.split("."):
            if m in ("64", "128", "256"):
                bits = int(m)
            elif m in ("U16", "S16"):
                bits = 16
            elif m in ("U8", "S8"):
                bits = 8
        h = out["ld" if op == "LDG" else "st"]
        h[str(bits)] = h.get(str(bits), 0) + 1
    return out


def _occupancy(capability: int, regs: int, num_warps: int, smem: int) -> float:
    """Active warps / max warps per SM from registers (256-register warp granules), warps, blocks and
    shared memory (1 KB reserved per block)."""
    regs_sm, max_warps, max_blocks, smem_sm = ARCH_LIMITS.get(capability, ARCH_LIMITS[90])
    per_warp = -(-max(regs, 1) * 32 // 256) * 256
    blocks = min(max_blocks, max_warps // num_warps, (regs_sm // per_warp) // num_warps,
                 smem_sm // (smem + 1024))
    return round(blocks * num_warps / max_warps, 3)


def compile_one(launch, capability: int) -> dict:
    """Compile one specialization for ``sm_<capability>`` and measure it."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from fastdenoise import _triton_util

    fn = _kernel_fn(launch)
    signature, constexprs, attrs, options, key = specialize(launch, capability)
    rec = {"kernel": launch["kernel"], "arch": f"sm_{capability}", "spec": key,
           "claim": _triton_util.CLAIMS.get(launch["kernel"], "none"),
           "fp_fusion": options.get("enable_fp_fusion", True), "ok": False}
    t0 = time.perf_counter()
    try:
        k = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=GPUTarget("cuda", capability, 32),
                           options=options)
    except Exception as e:  # a compile failure is a result, reported in the record
        rec["error"] = f"{type(e).__name__}: {str(e)[:2000]}"
        return rec
    rec["compile_s"] = round(time.perf_counter() - t0, 3)
    ptx, cubin = k.asm["ptx"], k.asm["cubin"]
    nw = k.metadata.num_warps
    with tempfile.TemporaryDirectory() as tmp:
        p_ptx, p_bin = os.path.join(tmp, "k.ptx"), os.path.join(tmp, "k.cubin")
        with open(p_ptx, "w") as f:
            f.write(ptx)
        with open(p_bin, "wb") as f:
            f.write(cubin)
        arch = f"sm_{capability}{'a' if capability == 90 else ''}"
        fmad = [] if rec["fp_fusion"] else ["--fmad=false"]
        info = subprocess.run([_ptxas(capability), "-v", *fmad, f"--gpu-name={arch}", p_ptx, "-o",
                               os.path.join(tmp, "v.cubin")], capture_output=True, text=True).stderr
        sass = subprocess.run([_tool("cuobjdump"), "-sass", p_bin], capture_output=True, text=True).stdout

    def num(pat):
        m = re.search(pat, info)
        return int(m.group(1)) if m else 0

    regs = num(r"Used (\d+) registers")
    smem = num(r"(\d+) bytes smem")
    rec.update(
        regs=regs, spills=num(r"(\d+) bytes spill stores") + num(r"(\d+) bytes spill loads"),
        stack=num(r"(\d+) bytes stack frame"), local=num(r"(\d+) bytes lmem"), shared=smem, num_warps=nw,
        occupancy=_occupancy(capability, regs, nw, smem), widths=_widths(sass),
        fma=len(re.findall(r"\b(?:fma|mad)\.r[nzmp]\.(?:ftz\.)?(?:sat\.)?(?:f16|bf16|f32|f64)", ptx)),
        ffma_sass=len(_SASS_FMA.findall(sass)),
    )
    if not re.search(r"Used \d+ registers", info):
        rec["error"] = "ptxas -v gave no register count: " + info[-500:]
        return rec
    # Contraction of the kernel's own arithmetic shows in the PTX (LLVM) and is then disabled in ptxas by
    # --fmad=false (the EXACT launch). FMAs that remain in the SASS of such kernels are ptxas's expansions
    # of correctly rounded div.rn.f64 / sqrt.rn.f64 and of integer division: IEEE-exact by the PTX
    # specification, so they are reported (ffma_sass, div_sqrt_rn) but not judged.
    rec["div_sqrt_rn"] = len(re.findall(r"\b(?:div|sqrt)\.rn\.f(?:32|64)", ptx))
    rec["bit_identical"] = rec["claim"] == "bit-identical" and not rec["fp_fusion"] and rec["fma"] == 0
    rec["ok"] = rec["spills"] == 0 and (rec["claim"] != "bit-identical" or rec["bit_identical"])
    return rec


def unique_launches(launches: list[dict], capability: int = 90) -> list[dict]:
    """One launch per specialization (the first seen), with the calls and the count that hit it."""
    seen: dict[str, dict] = {}
    for la in launches:
        key = specialize(la, capability)[4]
        if key not in seen:
            seen[key] = dict(la, calls=[], launches=0)
        s = seen[key]
        s["launches"] += 1
        if la["call"] not in s["calls"]:
            s["calls"].append(la["call"])
    return list(seen.values())


def _compile_job(args):
    launch, cap = args
    rec = compile_one(launch, cap)
    rec["launches"], rec["calls"] = launch["launches"], launch["calls"][:4] + (["..."] if len(launch["calls"]) > 4
                                                                                 else [])
    return rec


def run_check(archs: list[int], subset: str = "full", jobs: int = 2, launches: list[dict] | None = None,
              kernels: set[str] | None = None) -> dict:
    """Record (in a subprocess) unless ``launches`` are given, then compile every specialization (of
    ``kernels`` only, when given)."""
    if launches is None:
        launches = record_subprocess(subset)
    uniq = [u for u in unique_launches(launches) if kernels is None or u["kernel"] in kernels]
    if subset == "ci":  # one specialization per kernel: the one of its 4x3x256x256 calls, else its first
        best: dict[str, dict] = {}
        for u in uniq:
            mid = any("/4x3x256x256/" in c for c in u["calls"])
            if u["kernel"] not in best or (mid and not best[u["kernel"]]["_mid"]):
                best[u["kernel"]] = dict(u, _mid=mid)
        uniq = list(best.values())
    jobs_list = [(u, cap) for cap in archs for u in uniq]
    t0 = time.perf_counter()
    if jobs > 1:
        with concurrent.futures.ProcessPoolExecutor(jobs) as ex:
            records = list(ex.map(_compile_job, jobs_list))
    else:
        records = [_compile_job(j) for j in jobs_list]
    import triton

    from fastdenoise import _triton_util

    kernels = sorted({r["kernel"] for r in records})
    return {
        "tool": "python -m tools.gpucheck", "subset": subset, "triton": triton.__version__,
        "archs": [f"sm_{a}" for a in archs], "seconds": round(time.perf_counter() - t0, 1),
        "kernels": len(kernels), "specializations": len(uniq), "recorded_launches": len(launches),
        "claims": {k: _triton_util.CLAIMS.get(k, "none") for k in kernels},
        "ok": all(r["ok"] for r in records), "records": records,
    }


def record_subprocess(subset: str) -> list[dict]:
    """Run :func:`record` in a fresh interpreter with TRITON_INTERPRET=1 and return its launches."""
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env.pop("FASTDENOISE_BACKEND", None)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "launches.json")
        subprocess.run([sys.executable, "-m", "tools.gpucheck", "--record", path, "--subset", subset],
                       env=env, check=True, cwd=_ROOT)
        with open(path) as f:
            return json.load(f)


def summary_table(result: dict) -> str:
    """Markdown table: one row per kernel and arch (worst case over its specializations)."""
    rows = {}
    for r in result["records"]:
        k = (r["kernel"], r["arch"])
        rows.setdefault(k, []).append(r)
    lines = ["| kernel | arch | specs | regs (max) | spills | smem B | occupancy (min) | ld/st widths (bits) | "
             "PTX fma (max) | claim | ok |", "|" + " --- |" * 11]
    for (kern, arch), rs in sorted(rows.items()):
        good = [r for r in rs if "regs" in r]
        ld = sorted({w for r in good for w in r["widths"]["ld"]}, key=int)
        st = sorted({w for r in good for w in r["widths"]["st"]}, key=int)
        claim = rs[0]["claim"]
        bi = all(r.get("bit_identical") for r in rs)
        lines.append(
            f"| {kern} | {arch} | {len(rs)} | {max((r['regs'] for r in good), default='-')} | "
            f"{sum(r['spills'] for r in good)} | {max((r['shared'] for r in good), default='-')} | "
            f"{min((r['occupancy'] for r in good), default='-')} | {','.join(ld) or '-'} / {','.join(st) or '-'} | "
            f"{max((r['fma'] for r in good), default='-')} | "
            f"{'bit-identical' + ('' if bi else ' (BROKEN)') if claim == 'bit-identical' else 'tolerance'} | "
            f"{'yes' if all(r['ok'] for r in rs) else 'NO'} |")
    return "\n".join(lines)


def compact_table(result: dict) -> str:
    """Markdown table, one row per kernel: specializations, max registers per arch, spills, min occupancy,
    max PTX fma, claim (the summary in docs/GPU.md)."""
    by = {}
    for r in result["records"]:
        by.setdefault(r["kernel"], []).append(r)
    lines = ["| kernel | specs | regs sm_80 / sm_90 (max) | spills | occupancy (min) | PTX fma (max) | claim |",
             "|" + " --- |" * 7]
    for kern, rs in sorted(by.items()):
        good = [r for r in rs if "regs" in r]

        def mx(arch):
            return max((r["regs"] for r in good if r["arch"] == arch), default="-")
        claim = "bit-identical" if rs[0]["claim"] == "bit-identical" else "tolerance"
        if claim == "bit-identical" and not all(r.get("bit_identical") for r in rs):
            claim += " (BROKEN)"
        specs = len(rs) // max(1, len({r["arch"] for r in rs}))
        lines.append(f"| {kern} | {specs} | {mx('sm_80')} / {mx('sm_90')} | "
                     f"{sum(r['spills'] for r in good)} | {min((r['occupancy'] for r in good), default='-')} | "
                     f"{max((r['fma'] for r in good), default='-')} | {claim} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.gpucheck", description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="sm_80,sm_90", help="comma-separated targets (default sm_80,sm_90)")
    ap.add_argument("--json", help="write the records here")
    ap.add_argument("--subset", choices=("full", "ci"), default="full",
                    help="full: every recorded specialization; ci: float32 small shapes, one per kernel")
    ap.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1))
    ap.add_argument("--table", action="store_true", help="print the markdown summary table")
    ap.add_argument("--kernels", help="comma-separated kernel names: compile only these")
    ap.add_argument("--merge", metavar="PATH", help="with --kernels: replace these kernels' records in the JSON "
                    "at PATH (a full run) and write the result to --json")
    ap.add_argument("--record", metavar="PATH", help="only record the launches (JSON) and exit (runs under "
                    "TRITON_INTERPRET=1)")
    ap.add_argument("--launches", metavar="PATH", help="compile the launches recorded with --record (e.g. by another "
                    "Triton version, whose interpreter may not run here)")
    a = ap.parse_args(argv)
    if a.record:
        launches = record(a.subset)
        with open(a.record, "w") as f:
            json.dump(launches, f)
        return 0
    if os.environ.get("TRITON_INTERPRET") == "1":
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        return subprocess.run([sys.executable, "-m", "tools.gpucheck", *(argv or sys.argv[1:])],
                              env=env, cwd=_ROOT).returncode
    archs = [int(s.strip().removeprefix("sm_")) for s in a.arch.split(",") if s.strip()]
    kernels = {k.strip() for k in a.kernels.split(",")} if a.kernels else None
    launches = None
    if a.launches:
        with open(a.launches) as f:
            launches = json.load(f)
    res = run_check(archs, a.subset, a.jobs, launches=launches, kernels=kernels)
    if a.merge and kernels:
        with open(a.merge) as f:
            old = json.load(f)
        keep = [r for r in old["records"] if r["kernel"] not in kernels]
        res["records"] = keep + res["records"]
        res["specializations"] = len({(r["kernel"], r["spec"]) for r in res["records"]})
        res["kernels"] = len({r["kernel"] for r in res["records"]})
        res["claims"] = {**old["claims"], **res["claims"]}
        res["ok"] = all(r["ok"] for r in res["records"])
        res["seconds"] = round(old["seconds"] + res["seconds"], 1)
        res["rerun_kernels"] = sorted(kernels)
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    bad = [r for r in res["records"] if not r["ok"]]
    print(f"gpucheck: {res['kernels']} kernels, {res['specializations']} specializations x {len(archs)} archs "
          f"from {res['recorded_launches']} recorded launches in {res['seconds']} s: "
          f"{'all ok' if not bad else f'{len(bad)} FAILED'}")
    if a.table:
        print(summary_table(res))
    for r in bad:
        why = r.get("error") or f"spills={r.get('spills')} fma={r.get('fma')} ffma_sass={r.get('ffma_sass')}"
        print(f"FAILED {r['spec']} on {r['arch']}: {why}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
