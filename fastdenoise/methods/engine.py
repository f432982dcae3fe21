"""The engine's former single-module home: every name now lives in :mod:`fastdenoise.engine` (one module per
part); this module re-exports them so that ``from fastdenoise.methods.engine import Trainer`` keeps working."""
from fastdenoise.engine import *  # noqa: F401,F403
from fastdenoise.engine import __all__  # noqa: F401
