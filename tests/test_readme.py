"""The Python examples of the README and docs/API.md run as written (smaller images and fewer iterations)."""
import os
import re

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_blocks(relpath: str) -> list[str]:
    """Every ```python block of a Markdown file, in order."""
    with open(os.path.join(ROOT, relpath)) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


@pytest.fixture
def quick(monkeypatch):
    """denoise / denoise_many at 3 iterations unless the example gives its own count (the calls and their
    arguments are the documented ones; only the default length changes)."""
    import fastdenoise
    import fastdenoise.api

    torch.set_num_threads(1)
    for mod, name in ((fastdenoise, "denoise"), (fastdenoise.api, "denoise_many")):
        real = getattr(mod, name)

        def short(*args, _real=real, **kw):
            kw["iters"] = min(kw.get("iters") or 3, 3)
            return _real(*args, **kw)

        monkeypatch.setattr(mod, name, short)


def test_readme_example_runs(quick, capsys):
    blocks = python_blocks("README.md")
    assert len(blocks) == 2
    code = blocks[0].replace('load_sample("astronaut", crop=256)', 'load_sample("astronaut", crop=32)')
    ns = {}
    exec(compile(code, "README.md", "exec"), ns)
    assert ns["den"].shape == (32, 32, 3) and ns["info"]["iters"] == 3
    assert " dB, 3 iterations" in capsys.readouterr().out


def test_readme_training_loop_runs():
    """The README's own-loop example: a new seed from torch's generator every iteration."""
    import fastdenoise.functional as F

    code = python_blocks("README.md")[1]
    seeds = []
    real = F.draw_seed

    def spy(*a, **k):
        seeds.append(real(*a, **k))
        return seeds[-1]

    F.draw_seed = spy
    try:
        ns = {}
        exec(compile(code, "README.md (training loop)", "exec"), ns)
    finally:
        F.draw_seed = real
    assert len(seeds) == 3 and len(set(seeds)) == 3
    assert torch.isfinite(ns["loss"])


def test_api_doc_examples_run(quick):
    blocks = python_blocks("docs/API.md")
    assert len(blocks) == 4
    ns = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/API.md (block {i + 1})", "exec"), ns)
    assert ns["many"][0].shape == (32, 32, 3) and ns["outs"].shape == (2, 3, 32, 32)
    assert ns["info"]["init"] == {"model": "noise2same_start.pt"}
    assert ns["it"] == ns["iters"] - 1 and torch.isfinite(ns["loss"])
    assert len(ns["teachers"]) == 6 and ns["out"].shape == (2, 3, 64, 64)


def test_api_doc_loop_varies_the_seed():
    """The training-loop example draws a new sampling pattern every iteration (a constant seed would not)."""
    loop = python_blocks("docs/API.md")[2]
    assert "seed = base_seed + it" in loop
