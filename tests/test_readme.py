"""The README's API example runs as written (with small stand-ins for the user's networks and data)."""
import os
import re

import numpy as np
import torch

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def test_readme_api_block_runs():
    text = open(README).read()
    block = re.search(r"## API\n\n```python\n(.*?)```", text, re.S).group(1)
    torch.set_num_threads(1)
    ns = {
        "net": lambda x: 0.9 * x,
        "bsn": lambda x: 0.8 * x,
        "x_hat": torch.rand(2, 3, 64, 64),
        "x_m": torch.rand(2, 3, 64, 64),
        "t": 3, "total": 100,
        "out_masked": torch.rand(2, 3, 64, 64, requires_grad=True),
        "out_full": torch.rand(2, 3, 64, 64),
        "student_out": torch.rand(2, 3, 64, 64, requires_grad=True),
        "teachers": torch.rand(6, 2, 3, 64, 64),
        "noisy": np.random.default_rng(0).random((32, 32, 3)).astype(np.float32),
        "noisy_batch": torch.rand(2, 3, 32, 32),
    }
    exec(compile(block, "README.md", "exec"), ns)
    assert ns["outs"].shape == (2, 3, 32, 32)
    assert ns["den"].shape == (32, 32, 3) and len(ns["teachers"]) == 6  # ATBSN.teachers: a list of J outputs
