"""Training methods (each a config dataclass + a step on the fused ops) and their shared engine.

Registry: ``METHODS`` maps a method name to its module-level ``build(config=None, in_ch=3, **overrides)``
factory; other methods register with :func:`register_method`.
"""
from __future__ import annotations

import importlib
from typing import Callable

from fastdenoise.methods.engine import FitConfig
from fastdenoise.methods.engine import FitResult
from fastdenoise.methods.engine import Trainer

# name -> "module path" (imported lazily) or a build callable
METHODS: dict[str, str | Callable] = {
    "p2n": "fastdenoise.methods.p2n",
    "nb2nb": "fastdenoise.methods.nb2nb",
    "noise2same": "fastdenoise.methods.noise2same",
    "apr": "fastdenoise.methods.apr",
    "blind2grad": "fastdenoise.methods.blind2grad",
}


def register_method(name: str, target: str | Callable) -> None:
    """Register a method: ``target`` is a module path exposing ``build``, or a build callable."""
    METHODS[name] = target


def available() -> list[str]:
    """Names of the registered methods."""
    return sorted(METHODS)


def get_builder(name: str) -> Callable:
    """The ``build`` factory of method ``name``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {available()}")
    target = METHODS[name]
    if isinstance(target, str):
        return importlib.import_module(target).build
    return target


__all__ = ["FitConfig", "FitResult", "METHODS", "Trainer", "available", "get_builder",
           "register_method"]
