"""The optional compiled extension ``fastdenoise._C`` (C++ CPU kernels)."""
import os

try:
    from fastdenoise import _C  # noqa: F401

    HAS_EXT = True
    EXT_ERROR = None
except ImportError as exc:  # built without the extension, or the build failed
    _C = None
    HAS_EXT = False
    EXT_ERROR = exc
    if os.environ.get("FASTDENOISE_REQUIRE_EXT", "0") == "1":
        raise ImportError(
            "FASTDENOISE_REQUIRE_EXT=1 but the C++ extension fastdenoise._C could not be imported: "
            f"{exc}. Rebuild with: pip install --no-build-isolation -e ."
        ) from exc
