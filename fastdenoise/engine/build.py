"""Building a trainer for a method, and the module-level ``build``/``fit``/``train`` of each method."""
from __future__ import annotations

import torch

from fastdenoise.engine.common import resolve_device
from fastdenoise.engine.common import seeded
from fastdenoise.engine.config import FitConfig
from fastdenoise.engine.config import FitResult
from fastdenoise.engine.config import validate
from fastdenoise.engine.loop import Trainer
from fastdenoise.engine.method import Method


def build(method_cls: type[Method], config: FitConfig | None = None, *, in_ch: int = 3,
          model: torch.nn.Module | None = None, models: dict | None = None, **overrides) -> Trainer:
    """A :class:`Trainer` for ``method_cls``: its config (``overrides`` replace fields), its networks with
    their initial weights (random ones drawn from ``config.seed`` without touching the caller's RNG, and
    re-drawn in place when a fit asks for another seed). ``model`` (the first network) or ``models`` (by
    part name; None entries are built) supply networks whose current weights are the init."""
    cfg = config if config is not None else method_cls.Config()
    if not isinstance(cfg, method_cls.Config):
        raise TypeError(f"config must be a {method_cls.Config.__name__}, got {type(cfg).__name__}")
    if overrides:
        cfg = cfg.replace(**overrides)
    if isinstance(in_ch, bool) or not isinstance(in_ch, int) or in_ch < 1:
        raise ValueError(f"in_ch must be a positive int, got {in_ch!r}")
    device = resolve_device(cfg.device)
    method = method_cls(cfg)
    method.cfg = cfg = method.resolve(cfg, device)     # device-dependent defaults filled in, once
    validate(cfg, method)
    method.check()
    from fastdenoise._runtime import check_seed

    seed = check_seed(cfg.seed)
    net_ch = method.model_channels(in_ch)
    given = dict(models or {})
    if model is not None:
        given[method.parts()[0]] = model
    unknown = set(given) - set(method.parts())
    if unknown:
        raise ValueError(f"models has unknown parts {sorted(unknown)}; {method.name} has {list(method.parts())}")
    models, makers = {}, {}
    for i, name in enumerate(method.parts()):
        if given.get(name) is not None:
            models[name], makers[name] = given[name], None     # the given network's weights are the init
            continue

        def make(s: int, name: str = name, i: int = i) -> dict:
            with seeded(s + i):
                return method.make_model(net_ch, name).state_dict()

        with seeded(seed + i):
            m = method.make_model(net_ch, name)
        fixed = method.load_init(m, name, in_ch=net_ch)
        models[name], makers[name] = m, (None if fixed else make)
    tr = Trainer(method, models, makers, seed)
    tr.in_ch = in_ch
    tr.init_from = {n: method.init_from.get(n, "given" if makers[n] is None else "scratch") for n in models}
    return tr


def method_api(method_cls: type[Method]):
    """The module-level ``build``, ``fit`` and ``train`` functions of a method."""

    def build_(config: FitConfig | None = None, *, in_ch: int = 3, model: torch.nn.Module | None = None,
               **overrides) -> Trainer:
        return build(method_cls, config, in_ch=in_ch, model=model, **overrides)

    def fit(y: torch.Tensor, config: FitConfig | None = None, *, clean: torch.Tensor | None = None,
            trainer: Trainer | None = None, seed: int | None = None, **overrides) -> FitResult:
        tr = trainer or build_(config, in_ch=int(y.shape[-3]), **overrides)
        return tr.fit(y, clean=clean, seed=seed)

    def train(images: list, config: FitConfig | None = None, *, crop: int | None = None,
              batch: int | None = None, iters: int | None = None, trainer: Trainer | None = None,
              seed: int | None = None, **overrides) -> Trainer:
        tr = trainer
        if tr is None:                  # a fresh trainer: its initial weights drawn for this seed, as fit does
            tr = build_(config, in_ch=int(torch.as_tensor(images[0]).shape[-3]), **overrides)
            tr.reset(seed)
        tr.train_images(images, crop=crop, batch=batch, iters=iters, seed=seed)
        return tr

    name = method_cls.__name__
    build_.__doc__ = f"A :class:`~fastdenoise.engine.Trainer` for {name} (see :func:`engine.build`)."
    fit.__doc__ = (f"Single-image mode: fit {name} to ``y`` (B, C, H, W) on [0, 1] and return the "
                   ":class:`FitResult` (``trainer`` from ``build`` is re-initialised in place and reused).")
    train.__doc__ = (f"Dataset mode: train {name} on random crops of ``images`` ((C, H, W) tensors) and return "
                     "the trainer; denoise afterwards with ``trainer.denoise(y)``. Checkpoint/resume through "
                     "the config.")
    build_.__name__ = "build"
    return build_, fit, train
