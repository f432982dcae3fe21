"""fastdenoise.io: round trips, bit depths, atomic writes, input protection, clear errors."""
import os

import numpy as np
import pytest
import torch

from fastdenoise import io

pytestmark = pytest.mark.cpu_only("file input and output")


def _img(h, w, c, levels, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, levels, size=(h, w, c)) / (levels - 1)).astype(np.float32)


def _no_temp(d):
    return [f for f in os.listdir(d) if ".tmp" in f] == []


@pytest.mark.parametrize("ext,depth,c", [
    (".png", 8, 3), (".png", 8, 1), (".png", 8, 4), (".png", 16, 1),
    (".tif", 8, 3), (".tif", 16, 3), (".tif", 16, 1), (".tif", 8, 4), (".tif", 32, 2),
    (".npy", 32, 3), (".npy", 16, 1), (".npy", 8, 5), (".jpg", 8, 3),
])
def test_round_trip(tmp_path, ext, depth, c):
    levels = {8: 256, 16: 65536, 32: 1000}[depth]
    img = _img(9, 11, c, levels)
    if depth == 32:
        img = img * 1.5 - 0.2  # float data are stored as they are, outside [0, 1] too
    if ext == ".jpg":
        img = np.full((16, 16, 3), 0.5, np.float32)  # lossy: a flat image survives
    path = tmp_path / f"im{ext}"
    out = io.write_image(path, img, bit_depth=depth)
    assert out == str(path)
    back, info = io.read_image(path)
    assert back.dtype == np.float32 and back.shape == img.shape
    assert info.bit_depth == depth and info.channels == c and info.path == str(path)
    if ext == ".jpg":
        assert np.abs(back - img).max() <= 2 / 255
    else:
        np.testing.assert_array_equal(back, img)
    assert _no_temp(tmp_path)


def test_info_and_like_keeps_bit_depth(tmp_path):
    src = tmp_path / "in16.tif"
    io.write_image(src, _img(8, 8, 3, 65536), bit_depth=16)
    img, info = io.read_image(src)
    assert info.dtype == "uint16" and info.shape == (8, 8, 3)
    out = tmp_path / "out.tif"
    io.write_image(out, img, like=info)
    _, info2 = io.read_image(out)
    assert info2.bit_depth == 16
    io.write_image(tmp_path / "out.png", img, like=info)  # RGB PNG cannot hold 16 bits: falls back to 8
    assert io.read_image(tmp_path / "out.png")[1].bit_depth == 8
    gray = tmp_path / "g.png"
    io.write_image(gray, _img(6, 7, 1, 256))
    _, ginfo = io.read_image(gray)
    assert ginfo.shape == (6, 7) and ginfo.channels == 1 and ginfo.bit_depth == 8


def test_read_npy_layouts(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(12, dtype=np.uint8).reshape(3, 4))
    img, info = io.read_image(tmp_path / "a.npy")
    assert img.shape == (3, 4, 1) and info.bit_depth == 8 and img.max() == np.float32(11 / 255)
    np.save(tmp_path / "planar.npy", np.zeros((3, 10, 12), np.float32))
    img, info = io.read_image(tmp_path / "planar.npy")
    assert img.shape == (10, 12, 3) and info.planar


def test_refuse_overwrite_of_an_input(tmp_path):
    src = tmp_path / "noisy.png"
    io.write_image(src, _img(5, 5, 3, 256))
    before = src.read_bytes()
    img, info = io.read_image(src)
    with pytest.raises(FileExistsError, match="noisy.png"):
        io.write_image(src, img * 0, like=info)
    with pytest.raises(FileExistsError, match="noisy.png"):
        io.write_image(str(src), img * 0, protect={str(tmp_path / "." / "noisy.png")})
    other = tmp_path / "other.png"
    io.write_image(other, img)
    with pytest.raises(FileExistsError, match="overwrite"):
        io.write_image(other, img, overwrite=False)
    io.write_image(other, img * 0)  # a non-input is replaced
    assert src.read_bytes() == before and _no_temp(tmp_path)


def test_atomic_write_failure_leaves_nothing(tmp_path, monkeypatch):
    import tifffile

    path = tmp_path / "r.tif"
    io.write_image(path, _img(4, 4, 1, 256))
    before = path.read_bytes()

    def boom(*a, **k):
        with open(a[0], "wb") as f:
            f.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", boom)
    with pytest.raises(ValueError, match="r.tif"):
        io.write_image(path, _img(4, 4, 1, 256, seed=1))
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["r.tif"]


def test_bad_files_and_arguments(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match="broken.png"):
        io.read_image(bad)
    with pytest.raises(FileNotFoundError, match="missing.tif"):
        io.read_image(tmp_path / "missing.tif")
    img = _img(4, 4, 3, 256)
    with pytest.raises(ValueError, match="16-bit PNG"):
        io.write_image(tmp_path / "c16.png", img, bit_depth=16)
    with pytest.raises(ValueError, match="bit_depth"):
        io.write_image(tmp_path / "a.jpg", img, bit_depth=16)
    with pytest.raises(ValueError, match="bit_depth"):
        io.write_image(tmp_path / "a.png", img, bit_depth=12)
    with pytest.raises(ValueError, match="image must have shape"):
        io.write_image(tmp_path / "a.png", np.zeros((2, 2, 2, 2)))
    assert _no_temp(tmp_path)


def test_tensor_conversion():
    img = _img(5, 7, 3, 256)
    t = io.to_tensor(img)
    assert t.shape == (1, 3, 5, 7) and t.dtype == torch.float32 and t.is_contiguous()
    np.testing.assert_array_equal(io.from_tensor(t), img)
    np.testing.assert_array_equal(io.from_tensor(t[0]), img)
    assert io.to_tensor(img[:, :, 0]).shape == (1, 1, 5, 7)
    with pytest.raises(ValueError, match="batch size 1"):
        io.from_tensor(torch.zeros(2, 3, 4, 4))


def test_load_sample():
    for name, c in (("astronaut", 3), ("chelsea", 3), ("coffee", 3), ("camera", 1)):
        s = io.load_sample(name, crop=64)
        assert s.shape == (64, 64, c) and s.dtype == np.float32
        assert 0.0 <= s.min() and s.max() <= 1.0
    from skimage import data

    full = data.astronaut()
    np.testing.assert_array_equal(io.load_sample("astronaut", crop=2)[..., 0] * 255, full[255:257, 255:257, 0])
    assert io.load_sample("chelsea", crop=None).shape == (300, 451, 3)
    with pytest.raises(ValueError, match="crop"):
        io.load_sample("chelsea", crop=301)
    with pytest.raises(ValueError, match="name"):
        io.load_sample("lena")


# ------------------------------------------------------------------ bad data, stacks, permissions
@pytest.mark.parametrize("name,arr,match", [
    ("nan.npy", np.full((8, 8), np.nan, np.float32), "256|64 NaN"),
    ("inf.npy", np.array([[0.5, np.inf], [0.1, -np.inf]], np.float32), "0 NaN and 2 infinite"),
    ("empty.npy", np.zeros((0, 16), np.float32), "empty"),
    ("empty3.npy", np.zeros((4, 0, 3), np.uint8), "empty"),
    ("vector.npy", np.zeros(16, np.float32), "empty"),
    ("complex.npy", np.zeros((4, 4), np.complex64), "unsupported dtype complex64"),
])
def test_bad_arrays_refused_with_file_and_problem(tmp_path, name, arr, match):
    np.save(tmp_path / name, arr)
    with pytest.raises(ValueError, match=match) as e:
        io.read_stack(tmp_path / name)
    assert name in str(e.value)


def test_undecodable_file_one_line_message(tmp_path):
    for name in ("broken.png", "broken.tif", "broken.npy", "broken.jpg"):
        (tmp_path / name).write_bytes(b"\x00garbage" * 10)
        with pytest.raises(ValueError, match="cannot read image") as e:
            io.read_stack(tmp_path / name)
        assert name in str(e.value) and "\n" not in str(e.value)


def test_multipage_tiff_is_a_stack_and_round_trips(tmp_path):
    import tifffile

    rng = np.random.default_rng(0)
    raw = rng.integers(0, 65536, (5, 64, 64), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "s.tif", raw)                   # 5 bare pages: guessed ZYX
    vol, info = io.read_stack(tmp_path / "s.tif")
    assert vol.shape == (5, 64, 64, 1) and info.axes == "ZYX" and info.slices == 5 and info.guessed
    assert "5 slice(s) of 64x64" in info.describe()
    with pytest.raises(ValueError, match="stack"):
        io.read_image(tmp_path / "s.tif")
    io.write_stack(tmp_path / "o.tif", vol, like=info)
    back = tifffile.imread(tmp_path / "o.tif")
    assert back.dtype == np.uint16 and back.shape == raw.shape
    np.testing.assert_array_equal(back, raw)
    assert io.read_stack(tmp_path / "o.tif")[1].axes == "ZYX"    # the axes are stored with the result


def test_stack_axes_metadata_guess_and_override(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "h.tif", np.zeros((3, 4, 16, 20), np.float32), imagej=True,
                     metadata={"axes": "TZYX"})
    vol, info = io.read_stack(tmp_path / "h.tif")
    assert info.axes == "TZYX" and vol.shape == (12, 16, 20, 1)
    v = np.random.default_rng(1).random((4, 10, 12, 3)).astype(np.float32)
    np.save(tmp_path / "v.npy", v)
    vol, info = io.read_stack(tmp_path / "v.npy")
    assert info.axes == "ZYXC" and vol.shape == (4, 10, 12, 3) and not info.alpha
    tyxc = np.random.default_rng(2).random((6, 16, 18)).astype(np.float32)      # (Y, X, Z) really
    np.save(tmp_path / "yxz.npy", tyxc)
    vol, info = io.read_stack(tmp_path / "yxz.npy", axes="yxz")
    assert vol.shape == (18, 6, 16, 1) and info.axes == "YXZ" and not info.guessed
    np.testing.assert_array_equal(vol[3, :, :, 0], tyxc[:, :, 3])
    io.write_stack(tmp_path / "o.npy", vol, like=info)
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), tyxc)
    for bad, msg in (("YX", "2 letters"), ("YYX", "exactly one Y"), ("CYC", "exactly one Y")):
        with pytest.raises(ValueError, match=msg):
            io.read_stack(tmp_path / "yxz.npy", axes=bad)


def test_write_stack_keeps_dtype(tmp_path):
    for dt in (np.float64, np.float16, np.int16, np.uint8):
        arr = (np.random.default_rng(0).random((2, 5, 6)) * (100 if dt == np.int16 else 1)).astype(dt)
        if dt == np.uint8:
            arr = (arr * 255).astype(np.uint8)
        np.save(tmp_path / "a.npy", arr)
        vol, info = io.read_stack(tmp_path / "a.npy", axes="ZYX")
        io.write_stack(tmp_path / "b.npy", vol, like=info)
        back = np.load(tmp_path / "b.npy")
        assert back.dtype == arr.dtype and back.shape == arr.shape
        if dt == np.float64:       # the library computes in float32
            np.testing.assert_allclose(back, arr, rtol=1e-6)
        else:
            np.testing.assert_array_equal(back, arr)


def test_old_two_channel_tiff_still_reads_as_channels(tmp_path):
    """A 2-channel TIFF written as bare pages (fastdenoise before stacks) is read as (H, W, 2)."""
    import tifffile

    tifffile.imwrite(tmp_path / "old.tif", np.zeros((9, 11, 2), np.float32))
    img, info = io.read_image(tmp_path / "old.tif")
    assert img.shape == (9, 11, 2) and info.axes == "YXC"


def test_alpha_detected_from_image_formats(tmp_path):
    io.write_image(tmp_path / "rgba.png", _img(6, 6, 4, 256))
    assert io.read_image(tmp_path / "rgba.png")[1].alpha
    np.save(tmp_path / "four.npy", _img(6, 6, 4, 256))
    assert not io.read_image(tmp_path / "four.npy")[1].alpha


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_get_the_umask_permissions(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        for name in ("a.png", "a.tif", "a.npy"):
            io.write_image(tmp_path / name, _img(4, 4, 3, 256))
            assert os.stat(tmp_path / name).st_mode & 0o777 == mode, name
    finally:
        os.umask(old)
