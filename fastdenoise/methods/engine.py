"""Re-exports :mod:`fastdenoise.engine` (the training engine, one module per part) under this name, so that
``from fastdenoise.methods.engine import Trainer`` works as ``from fastdenoise.engine import Trainer`` does."""
from fastdenoise.engine import *  # noqa: F401,F403
from fastdenoise.engine import __all__  # noqa: F401
