"""Starts and weights files: where the shipped starts are, how a network begins from one (or from any weights
file), and the one grayscale policy: a 1-channel network with no grayscale start begins from the RGB start
folded over the colour channels (:func:`rgb_state_to_gray`), which computes exactly what the RGB network
computes on the image replicated to RGB, outputs averaged. Images of other channel counts meet the starts as
RGB triples and single channels, each fitted by its own network (:func:`fastdenoise.api.trainers_for`)."""
from __future__ import annotations

import os

import torch

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")


def start_path(name: str, in_ch: int) -> str | None:
    """The shipped start of method ``name`` for ``in_ch``-channel networks (None: there is none)."""
    if in_ch not in (1, 3):
        return None
    p = os.path.join(WEIGHTS_DIR, f"{name}_start{'_gray' if in_ch == 1 else ''}.pt")
    return p if os.path.exists(p) else None


def load_state(path: str, part: str | None = None) -> dict:
    """fp32 state dict of a network from ``path``: a plain (or fp16) state dict, a ``{"state_dict": ...}``
    file, or a file of several networks (an engine checkpoint or a shipped start: ``{"parts": {name: {"model":
    state dict}}}``; ``part`` picks one, default the first)."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(ck, dict) and isinstance(ck.get("parts"), dict):
        parts = ck["parts"]
        if part is not None and part not in parts:
            raise ValueError(f"{path} holds the networks {list(parts)}, not {part!r}")
        entry = parts[part] if part is not None else next(iter(parts.values()))
        ck = entry["model"] if isinstance(entry, dict) and isinstance(entry.get("model"), dict) else entry
    elif isinstance(ck, dict) and "state_dict" in ck:
        ck = ck["state_dict"]
    elif isinstance(ck, dict) and isinstance(ck.get("model"), dict):
        ck = ck["model"]
    return {k: v.float() if v.is_floating_point() else v for k, v in ck.items()}


def saved_parts(path: str) -> list[str] | None:
    """Names of the networks in a multi-network file (None: a single network's state dict)."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    return list(ck["parts"]) if isinstance(ck, dict) and isinstance(ck.get("parts"), dict) else None


def same_layout(sd: dict, have: dict) -> bool:
    """Whether state dict ``sd`` has exactly the layers and shapes of ``have``."""
    return set(sd) == set(have) and all(sd[k].shape == v.shape for k, v in have.items())


def rgb_state_to_gray(sd: dict, gray: dict) -> dict:
    """An RGB network's weights ``sd`` reshaped to the grayscale network whose state dict is ``gray``.

    The weights that read the image (the first conv, and any decoder conv fed the input as a skip: the last
    3 input channels of a concatenation that ends with the image) are summed over those 3 channels; the
    output conv and its bias are averaged over the 3 output channels. The result computes exactly what the
    RGB network computes on the grayscale image replicated to RGB, with its three outputs averaged (before
    an output nonlinearity such as Blind2Grad's sigmoid: the logits are averaged, close but not equal).
    Raises ``ValueError`` when a weight maps no such way (another architecture)."""
    if set(sd) != set(gray):
        raise ValueError(f"the RGB weights and the grayscale network have different layers: "
                         f"{sorted(set(sd) ^ set(gray))[:4]}")
    out = {}
    for k, v in gray.items():
        w = sd[k].float().clone()
        if w.shape != v.shape:
            if w.dim() >= 2 and w.shape[1] - v.shape[1] == 2:       # reads the image: sum its 3 channels
                w = torch.cat([w[:, :-3], w[:, -3:].sum(1, keepdim=True)], 1)
            if w.shape[0] == 3 and v.shape[0] == 1:                 # writes the image: average
                w = w.mean(0, keepdim=True)
            if w.shape != v.shape:
                raise ValueError(f"cannot map RGB weight {k} {tuple(sd[k].shape)} to grayscale {tuple(v.shape)}")
        out[k] = w.to(v.dtype)
    return out


def fit_weights(sd: dict, have: dict, in_ch: int, path: str, part: str) -> dict:
    """``sd`` as ``have`` needs it: as is, or RGB weights folded for a grayscale network (as the shipped
    RGB starts are); a clear error when neither fits."""
    if same_layout(sd, have):
        return sd
    if in_ch == 1:
        try:
            folded = rgb_state_to_gray(sd, have)
        except ValueError:
            folded = None
        if folded is not None and same_layout(folded, have):
            return folded
    bad = sorted(k for k in have if k in sd and sd[k].shape != have[k].shape)
    miss = sorted(set(have) ^ set(sd))
    what = (f"{bad[0]} has shape {tuple(sd[bad[0]].shape)} there, the network needs "
            f"{tuple(have[bad[0]].shape)}" if bad else f"layers differ ({', '.join(miss[:3])})")
    raise ValueError(f"weights {path!r} do not fit the {part!r} network for {in_ch}-channel images: {what} "
                     f"(another method, width or channel count?)")


def load_init(method, model: torch.nn.Module, part: str, in_ch: int) -> bool:
    """Load initial weights into the fresh ``model``; True when every weight was loaded (the initial
    state does not depend on the seed) and ``method.init_from[part]`` names the file.

    ``cfg.weights``: one network's state dict for the first part, or a file of several networks such as
    a trainer checkpoint or a start written by ``scripts/pretrain.py``. Else, with ``cfg.init ==
    "start"``, the shipped start (:meth:`Method.start_path`) when it holds this part with the same layers and
    shapes (e.g. not the CPU-width Noise2Same start for the CUDA-width network). A grayscale network
    with no grayscale start gets the RGB start folded over the colour channels (:func:`rgb_state_to_gray`:
    the RGB network on the replicated image, outputs averaged)."""
    path = method.cfg.weights
    if path:
        if not os.path.exists(path):
            raise FileNotFoundError(f"weights file not found: {path}")
        names = saved_parts(path)
        if names is None:                   # one network's weights: the first part's
            if part != method.parts()[0]:
                return False
            sd = load_state(path)
        elif part not in names:
            return False
        else:
            sd = load_state(path, part)
        model.load_state_dict(fit_weights(sd, model.state_dict(), in_ch, path, part))
        method.init_from[part] = path
        return True
    if method.cfg.init != "start":
        return False
    start, have = method.start_path(in_ch), model.state_dict()
    if start is None and in_ch not in (1, 3) and method.start_path(3) is not None:
        # other channel counts: fastdenoise.denoise fits RGB triples and single channels, each from the start
        raise ValueError(f"{method.name}'s start takes 1- or 3-channel images, not {in_ch}: denoise() splits the "
                         f"channels into RGB triples and single channels, or use init='scratch' for one network")
    if start is None and in_ch == 1 and method.start_path(3) is not None:
        # no grayscale start: the RGB start, its image-facing weights folded over the colour channels
        # (exactly the RGB network on the image replicated to RGB, outputs averaged)
        start = method.start_path(3)
        try:
            sd = rgb_state_to_gray(load_state(start, part), have)
        except ValueError:
            return False
    elif start is None:
        return False
    else:
        try:
            sd = load_state(start, part)
        except ValueError:                  # the start has no such part
            return False
    if not same_layout(sd, have):
        return False
    model.load_state_dict(sd)
    method.init_from[part] = start
    return True
