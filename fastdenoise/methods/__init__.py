"""Training methods (each a :class:`~fastdenoise.engine.Method` in one module) and their engine.

The registry below is the one list of methods: :func:`available` feeds the CLI choices, ``eval``, the
quality table, the benchmarks and the trainer tests. A method module defines its ``Method`` subclass and
the module-level ``build``/``fit``/``train`` (``build, fit, train = method_api(MyMethod)``); register
more with :func:`register_method`.
"""
from __future__ import annotations

import importlib
from typing import Callable

from fastdenoise.engine import FitConfig
from fastdenoise.engine import FitResult
from fastdenoise.engine import Method
from fastdenoise.engine import Trainer

# name -> module path (imported lazily: the module's ``build`` and its Method subclass)
METHODS: dict[str, str] = {
    "p2n": "fastdenoise.methods.p2n",
    "nb2nb": "fastdenoise.methods.nb2nb",
    "noise2same": "fastdenoise.methods.noise2same",
    "apr": "fastdenoise.methods.apr",
    "blind2grad": "fastdenoise.methods.blind2grad",
    "zsn2n": "fastdenoise.methods.zsn2n",
}


def register_method(name: str, module: str) -> None:
    """Register a method: ``module`` is the path of a module exposing ``build`` and a ``Method`` subclass."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    METHODS[name] = module


def available() -> list[str]:
    """Names of the registered methods, in registration order."""
    return list(METHODS)


def _module(name: str):
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {available()}")
    return importlib.import_module(METHODS[name])


def get_builder(name: str) -> Callable:
    """The ``build`` factory of method ``name``."""
    return _module(name).build


def get_method(name: str) -> type[Method]:
    """The :class:`Method` subclass of method ``name``."""
    mod = _module(name)
    found = [v for v in vars(mod).values()
             if isinstance(v, type) and issubclass(v, Method) and v is not Method and v.__module__ == mod.__name__]
    if len(found) != 1:
        raise TypeError(f"module {mod.__name__} must define exactly one Method subclass, found {len(found)}")
    return found[0]


def batched(name: str) -> bool:
    """Whether method ``name`` fits K images at once (``Method.batched``: :meth:`Trainer.fit_many`)."""
    return bool(get_method(name).batched)


def summary(name: str) -> str:
    """One line describing method ``name`` (its Method's ``summary``)."""
    return get_method(name).summary or name


__all__ = ["FitConfig", "FitResult", "METHODS", "Method", "Trainer", "available", "batched", "get_builder", "get_method",
           "register_method", "summary"]
