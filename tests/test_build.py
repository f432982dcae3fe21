"""The package imports with or without the extension, reports its backends, and never falls back silently."""
import os
import subprocess
import sys

import pytest
import torch

import fastdenoise
from fastdenoise._runtime import resolve_backend

pytestmark = pytest.mark.cpu_only("the C++ extension (a CPU backend)")


def test_extension_present_when_required():
    """CI sets FASTDENOISE_REQUIRE_EXT=1: a missing extension is then a failure, not a skip."""
    if os.environ.get("FASTDENOISE_REQUIRE_EXT") == "1":
        assert fastdenoise.HAS_EXT
    info = fastdenoise.backends()
    assert set(info) == {"torch", "cpp", "triton"}
    assert info["torch"].startswith("cpu")


def test_forced_backend_errors():
    cpu = torch.device("cpu")
    assert resolve_backend("torch", cpu) == "torch"
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("numpy", cpu)
    code = (
        "import os, torch; os.environ.pop('TRITON_INTERPRET', None)\n"
        "from fastdenoise._runtime import resolve_backend\n"
        "try:\n    resolve_backend('triton', torch.device('cpu'))\nexcept RuntimeError as e:\n    print('ERR', e)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "ERR backend='triton' on CPU tensors needs the Triton interpreter" in out.stdout, out.stderr


def test_env_backend_is_honoured(monkeypatch):
    monkeypatch.setenv("FASTDENOISE_BACKEND", "torch")
    assert resolve_backend(None, torch.device("cpu")) == "torch"
    monkeypatch.setenv("FASTDENOISE_BACKEND", "bogus")
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend(None, torch.device("cpu"))


def test_import_without_extension():
    """With the compiled module hidden, the package imports, reports cpp unavailable and uses torch."""
    code = (
        "import sys; sys.modules['fastdenoise._C'] = None\n"
        "import torch, fastdenoise, fastdenoise.functional as F\n"
        "assert not fastdenoise.HAS_EXT and 'unavailable' in fastdenoise.backends()['cpp']\n"
        "g1, g2 = F.neighbor_subsample(torch.rand(1, 1, 4, 4), 0)\n"
        "try:\n    F.neighbor_subsample(torch.rand(1, 1, 4, 4), 0, backend='cpp')\nexcept RuntimeError as e:\n    print('ERR', e)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "FASTDENOISE_REQUIRE_EXT"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ERR backend='cpp' requested but fastdenoise._C is not available" in out.stdout
