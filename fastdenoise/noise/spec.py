"""Noise specifications (``'gaussian:25'``, ``'camera'`` ...): parsing, and applying them
(see :mod:`fastdenoise.noise`)."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass


from fastdenoise.noise._common import _check_level
from fastdenoise.noise.camera import CAMERA_SHOT
from fastdenoise.noise.camera import MICROSCOPY_DEFAULT
from fastdenoise.noise.camera import SHOT_RANGE
from fastdenoise.noise.camera import XYZ_TO_CAM
from fastdenoise.noise.camera import add_camera
from fastdenoise.noise.camera import add_microscopy
from fastdenoise.noise.camera import psf_blur
from fastdenoise.noise.synthetic import add_correlated
from fastdenoise.noise.synthetic import add_demosaic
from fastdenoise.noise.synthetic import add_gaussian
from fastdenoise.noise.synthetic import add_poisson


@dataclass(frozen=True)
class NoiseSpec:
    """A parsed noise description; call it as ``spec(x, seed)``.

    Attributes:
        kind: ``"gaussian"``, ``"poisson"``, ``"correlated"``, ``"demosaic"``, ``"camera"`` or ``"microscopy"``.
        level: sigma (0-255 scale) or lam, or a (lo, hi) range; for ``camera`` the shot level (a range:
            drawn log-uniform per image), for ``microscopy`` lam.
        extra: the kernel side (correlated) or the read-noise std (demosaic); None: the default.
        options: ``camera`` / ``microscopy`` fields given in the spec, as sorted (name, value) pairs
            (camera: ``shot``, ``read``, ``rgb_gain``, ``red_gain``, ``blue_gain``, ``ccm``, ``random``;
            microscopy: ``lam``, ``read``, ``psf``).
    """

    kind: str
    level: float | tuple[float, float]
    extra: float | None = None
    options: tuple = ()

    def _camera_kwargs(self) -> dict:
        o = dict(self.options)
        kw = {k: v for k, v in o.items() if k not in ("ccm", "random")}
        if "ccm" in o:
            kw["ccm_weights"] = tuple(1.0 if i == int(o["ccm"]) else 0.0 for i in range(len(XYZ_TO_CAM)))
        return kw

    def __call__(self, x, seed: int):
        return self.apply(x, seed)

    def apply(self, x, seed: int, return_params: bool = False):
        """The noisy image; with ``return_params`` also a list of dicts, one per image, of every parameter
        used (the :class:`CameraParams` fields for ``camera``; kind and levels otherwise)."""
        params = None
        if self.kind == "camera":
            y, cams = add_camera(x, seed, random=bool(dict(self.options).get("random")), return_params=True,
                                 **self._camera_kwargs())
            params = [c.as_dict() for c in cams]
        elif self.kind == "microscopy":
            o = {**MICROSCOPY_DEFAULT, **dict(self.options)}
            y = add_microscopy(x, seed, lam=o["lam"], read=o["read"], psf=o["psf"])
            params = [o]
        elif self.kind == "gaussian":
            y = add_gaussian(x, self.level, seed)
        elif self.kind == "correlated":
            y = add_correlated(x, self.level, seed, kernel=3 if self.extra is None else int(self.extra))
        elif self.kind == "demosaic":
            y = add_demosaic(x, self.level, seed, read=2.0 if self.extra is None else self.extra)
        else:
            y = add_poisson(x, self.level, seed)
        if not return_params:
            return y
        return y, params if params is not None else [{"kind": self.kind, "level": self.level, "extra": self.extra}]

    def target(self, x, seed: int):
        """The noise-free reference for scoring a denoiser on ``self.apply(x, seed)``: the noise-free rendering
        through the same camera pipeline for ``camera`` (demosaicing included, see :func:`add_camera`), the
        PSF-blurred signal for ``microscopy`` with a PSF, ``x`` itself for the other kinds."""
        if self.kind == "camera":
            return add_camera(x, seed, random=bool(dict(self.options).get("random")), noiseless=True,
                              **self._camera_kwargs())
        if self.kind == "microscopy" and dict(self.options).get("psf", 0.0) > 0:
            return psf_blur(x, dict(self.options)["psf"])
        return x

    @property
    def sigma_hint(self) -> float | None:
        """The per-pixel std on the 0-255 scale when the spec fixes it (Gaussian kinds), else None."""
        return None if self.kind not in ("gaussian", "correlated") or isinstance(self.level, tuple) \
            else float(self.level)

    def __str__(self) -> str:
        if self.kind in ("camera", "microscopy"):
            body = ",".join(k if k == "random" else f"{k}={v:g}" for k, v in self.options)
            return self.kind + (f":{body}" if body else "")
        lv = self.level
        s = f"{lv[0]:g}-{lv[1]:g}" if isinstance(lv, tuple) else f"{lv:g}"
        return f"{self.kind}:{s}" + ("" if self.extra is None else f":{self.extra:g}")


_KINDS = {"gaussian": "gaussian", "gauss": "gaussian", "g": "gaussian", "poisson": "poisson", "p": "poisson",
          "correlated": "correlated", "demosaic": "demosaic"}
_NUM = r"(\d+(?:\.\d*)?|\.\d+)"
_SPEC_RE = re.compile(rf"^([a-z]+)\s*:?\s*{_NUM}(?:\s*[-_,]\s*{_NUM})?(?:\s*:\s*{_NUM})?$")
_CAMERA_KEYS = {"shot": "shot", "read": "read", "gain": "rgb_gain", "rgb_gain": "rgb_gain", "red": "red_gain",
                "red_gain": "red_gain", "blue": "blue_gain", "blue_gain": "blue_gain", "ccm": "ccm"}
_MICRO_KEYS = ("lam", "read", "psf")
_SPEC_HELP = ("'gaussian:25', 'poisson:30', 'gaussian:5-50', 'correlated:25[:K]', 'demosaic:30[:READ]', "
              "'camera[:shot=S,read=R,gain=G,red=R,blue=B,ccm=I,random]' or 'microscopy[:LAM[:READ[:PSF]]]'")


def _spec_number(spec: str, key: str, text: str, *, positive: bool) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{key} must be a number in noise spec {spec!r}, got {text!r}") from None
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise ValueError(f"{key} must be a finite number {'> 0' if positive else '>= 0'} in noise spec {spec!r}, "
                         f"got {text!r}")
    return v


def _parse_camera(spec: str, body: str) -> NoiseSpec:
    opts: dict[str, float] = {}
    for item in (p.strip() for p in body.split(",")) if body else ():
        if item == "random":
            opts["random"] = 1.0
            continue
        key, eq, val = (s.strip() for s in item.partition("="))
        if not eq or key not in _CAMERA_KEYS:
            raise ValueError(f"camera noise spec {spec!r}: unknown field {item!r}; known: "
                             f"{', '.join(k + '=' for k in ('shot', 'read', 'gain', 'red', 'blue', 'ccm'))}, random")
        name = _CAMERA_KEYS[key]
        if name in opts:
            raise ValueError(f"camera noise spec {spec!r}: {key} given twice")
        opts[name] = _spec_number(spec, key, val, positive=name not in ("read", "ccm"))
        if name == "ccm" and (opts[name] != int(opts[name]) or not 0 <= opts[name] < len(XYZ_TO_CAM)):
            raise ValueError(f"ccm must be an integer in [0, {len(XYZ_TO_CAM) - 1}] in noise spec {spec!r}, "
                             f"got {val!r}")
    level = opts.get("shot", SHOT_RANGE if "random" in opts else CAMERA_SHOT)
    order = ("shot", "read", "rgb_gain", "red_gain", "blue_gain", "ccm", "random")
    return NoiseSpec("camera", level, None, tuple((k, opts[k]) for k in order if k in opts))


def _parse_microscopy(spec: str, body: str) -> NoiseSpec:
    opts: dict[str, float] = {}
    if "=" in body:
        for item in (p.strip() for p in body.split(",")):
            key, eq, val = (s.strip() for s in item.partition("="))
            if not eq or key not in _MICRO_KEYS:
                raise ValueError(f"microscopy noise spec {spec!r}: unknown field {item!r}; known: lam=, read=, psf=")
            if key in opts:
                raise ValueError(f"microscopy noise spec {spec!r}: {key} given twice")
            opts[key] = _spec_number(spec, key, val, positive=key == "lam")
    elif body:
        vals = [v.strip() for v in body.split(":")]
        if len(vals) > 3:
            raise ValueError(f"microscopy noise spec {spec!r}: at most LAM:READ:PSF")
        for key, val in zip(_MICRO_KEYS, vals):
            opts[key] = _spec_number(spec, key, val, positive=key == "lam")
    level = opts.get("lam", MICROSCOPY_DEFAULT["lam"])
    return NoiseSpec("microscopy", level, None, tuple((k, opts[k]) for k in _MICRO_KEYS if k in opts))


def parse_noise(spec: str) -> NoiseSpec:
    """Parse ``"gaussian:25"``, ``"poisson:30"``, ``"gaussian:5-50"`` (a per-image range),
    ``"correlated:25"`` / ``"correlated:25:5"`` (sigma, kernel side), ``"demosaic:30"`` /
    ``"demosaic:30:2"`` (lam, read-noise std), ``"camera"`` (:data:`CAMERA_DEFAULT`) /
    ``"camera:shot=0.01"`` (read on the Brooks et al. line) / ``"camera:shot=0.01,read=2e-5,gain=1.2,red=2,
    blue=1.6,ccm=0"`` / ``"camera:random"`` (every unspecified field drawn per image from the seed, see
    :meth:`CameraParams.draw`), and ``"microscopy"`` / ``"microscopy:30"`` / ``"microscopy:30:2:1.5"`` /
    ``"microscopy:lam=30,read=2,psf=1.5"`` (:func:`add_microscopy`; defaults :data:`MICROSCOPY_DEFAULT`).

    Also accepted: the Nb2Nb checkpoint names ``"gauss25"``, ``"gauss5_50"``, ``"poisson30"``,
    ``"poisson5_50"``, and the short kinds ``g``/``p``. Case and surrounding spaces are ignored.
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str, got {type(spec).__name__}")
    s = spec.strip().lower()
    kind, _, body = s.partition(":")
    if kind.strip() == "camera":
        return _parse_camera(spec, body.strip())
    if kind.strip() == "microscopy":
        return _parse_microscopy(spec, body.strip())
    m = _SPEC_RE.match(s)
    if m is None or m.group(1) not in _KINDS:
        raise ValueError(f"spec must look like {_SPEC_HELP}, got {spec!r}")
    kind = _KINDS[m.group(1)]
    lo = float(m.group(2))
    level = lo if m.group(3) is None else (lo, float(m.group(3)))
    level = _check_level("spec level", level, lo_open=(kind in ("poisson", "demosaic")))
    extra = None if m.group(4) is None else float(m.group(4))
    if extra is not None and kind not in ("correlated", "demosaic"):
        raise ValueError(f"only correlated and demosaic noise take a third field, got {spec!r}")
    if kind == "correlated" and extra is not None and (extra != int(extra) or int(extra) % 2 == 0):
        raise ValueError(f"the kernel side of correlated noise must be an odd integer, got {spec!r}")
    return NoiseSpec(kind, level, extra)


def split_noises(text: str) -> list[str]:
    """A comma-separated list of noise specs (as ``--noise`` takes it) as a list: a piece that does not
    begin with a noise kind continues the previous spec, so ``"gaussian:25,camera:shot=0.01,read=2e-5"``
    is two specs and ``"gaussian:5,50"`` one."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    kinds = set(_KINDS) | {"camera", "microscopy"}
    out: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        head = re.match(r"[a-zA-Z]+", piece)
        is_kind = head is not None and head.group(0).lower() in kinds and (
            len(head.group(0)) == len(piece) or piece[len(head.group(0))] in ": 0123456789.")
        if out and not is_kind:
            out[-1] += "," + piece
        else:
            out.append(piece)
    return out


def add_noise(x, spec: str | NoiseSpec, seed: int):
    """Apply a noise given as a string (see :func:`parse_noise`) or a :class:`NoiseSpec`."""
    if isinstance(spec, str):
        spec = parse_noise(spec)
    if not isinstance(spec, NoiseSpec):
        raise TypeError(f"spec must be a str or NoiseSpec, got {type(spec).__name__}")
    return spec(x, seed)
