"""Build of the optional C++ extension fastdenoise._C (pybind11 + ninja via torch.utils.cpp_extension).

Environment: FASTDENOISE_SKIP_EXT=1 builds no extension; FASTDENOISE_REQUIRE_EXT=1 makes a failed
build an error (otherwise it warns and the package falls back to Triton/torch); DEBUG=1 builds -O0 -g;
MAX_JOBS defaults to 2. Install with: pip install --no-build-isolation -e .
"""
import glob
import os
import warnings

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
SKIP = os.environ.get("FASTDENOISE_SKIP_EXT", "0") == "1"
REQUIRE = os.environ.get("FASTDENOISE_REQUIRE_EXT", "0") == "1"
os.environ.setdefault("MAX_JOBS", "2")

ext_modules, cmdclass = [], {}
if not SKIP:
    from torch.utils.cpp_extension import BuildExtension
    from torch.utils.cpp_extension import CppExtension

    class OptionalBuildExtension(BuildExtension):
        """A failed build warns instead of failing the install, unless FASTDENOISE_REQUIRE_EXT=1."""

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as exc:  # ninja raises RuntimeError, compilers CompileError
                if REQUIRE:
                    raise
                warnings.warn(f"fastdenoise: C++ extension not built ({exc}); the cpp backend is unavailable")

    debug = os.environ.get("DEBUG", "0") == "1"
    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")) + glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    # -march=native: the extension is always built on the machine that runs it (pip install here, or
    # `setup.py build_ext` on the GPU machine); FASTDENOISE_NATIVE=0 gives a portable build. FMA
    # contraction stays off so the C++ kernels round exactly like the reference (bit-identity tests).
    native = os.environ.get("FASTDENOISE_NATIVE", "1") == "1" and os.name != "nt"
    cxx = ["-O0", "-g"] if debug else ["-O3"] + (["-march=native"] if native else [])
    cxx += ["-ffp-contract=off", "-fno-math-errno"]
    cxx += ["-std=c++17", "-fopenmp"] if os.name != "nt" else []
    print(f"fastdenoise: building fastdenoise._C from {len(sources)} sources, cxx flags {cxx}")
    ext_modules = [CppExtension("fastdenoise._C", sources, extra_compile_args={"cxx": cxx},
                                extra_link_args=["-fopenmp"], optional=not REQUIRE)]
    cmdclass = {"build_ext": OptionalBuildExtension.with_options(use_ninja=True)}

setup(ext_modules=ext_modules, cmdclass=cmdclass)
