"""Data sources: each loader reads small files written in its source's real format.

Downloads are faked by putting the files in a temporary cache and setting the DOWNLOADS
checksums to theirs; `_urlopen` is replaced so that any attempt to use the network fails.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import pickle
import struct
import tarfile
import urllib.error
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from mentor.atomic import TEMP_PREFIX
from mentor.data import catalogue, download
from mentor.data.catalogue import DOWNLOADS
from mentor.data.datasets import CIFAR10C_CORRUPTIONS, load_cifar10c
from mentor.data.download import cache_dir, extract, fetch
from mentor.data.resize import resize_and_pad, resize_and_pad_one
from mentor.data.sources import load_source, per_class_subset
from mentor.errors import MentorError
from mentor.pixels import to_channels

rng = np.random.default_rng(0)


def _offline(url):
    raise urllib.error.URLError("network disabled in tests")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache as $MENTOR_CACHE, with the network cut off."""
    root = tmp_path / "cache"
    monkeypatch.setenv("MENTOR_CACHE", str(root))
    monkeypatch.setattr(download, "_urlopen", _offline)
    return root


def _md5_of(data: bytes) -> str:
    return "md5:" + hashlib.md5(data).hexdigest()


def _md5(path: Path) -> str:
    return _md5_of(path.read_bytes())


def _register(monkeypatch, name: str, path: Path) -> None:
    """Make `path` the good cached copy of DOWNLOADS[name]."""
    entry = replace(catalogue.DOWNLOADS[name], checksum=_md5(path))
    monkeypatch.setitem(catalogue.DOWNLOADS, name, entry)


def _serve(monkeypatch, files: dict[str, bytes]) -> list[str]:
    """Serve each DOWNLOADS[name]'s URL with the given bytes, as their good copy; returns the
    URLs requested, in order. Any other URL fails as offline."""
    by_url, asked = {}, []
    for name, data in files.items():
        entry = replace(catalogue.DOWNLOADS[name], checksum=_md5_of(data))
        monkeypatch.setitem(catalogue.DOWNLOADS, name, entry)
        by_url[entry.url] = data

    def urlopen(url):
        asked.append(url)
        if url not in by_url:
            _offline(url)
        return io.BytesIO(by_url[url])

    monkeypatch.setattr(download, "_urlopen", urlopen)
    return asked


def _cached_path(cache: Path, folder: str, name: str) -> Path:
    path = cache / folder / catalogue.DOWNLOADS[name].filename
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _tar(archive: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(archive, "w:gz" if archive.suffix in (".gz", ".tgz") else "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _images(n: int, h: int = 32, w: int = 32, c: int = 3) -> np.ndarray:
    return rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)


# ---- download ----------------------------------------------------------------------------


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MENTOR_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("MENTOR_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "mentor"


def test_fetch_offline_says_where_to_put_the_file(cache):
    dest = cache / "x" / "file.bin"
    with pytest.raises(MentorError, match="could not download") as e:
        fetch("https://example.org/file.bin", dest, "md5:" + "0" * 32)
    assert str(dest) in str(e.value) and "md5:" + "0" * 32 in str(e.value)
    assert not dest.exists() and not list(dest.parent.glob(TEMP_PREFIX + "*"))


def test_fetch_downloads_and_verifies(cache, monkeypatch):
    payload = b"mentor" * 1000
    monkeypatch.setattr(download, "_urlopen", lambda url: io.BytesIO(payload))
    dest = cache / "file.bin"
    good = "sha256:" + hashlib.sha256(payload).hexdigest()
    assert fetch("https://example.org/file.bin", dest, good) == dest
    assert dest.read_bytes() == payload


def test_fetch_wrong_checksum_leaves_nothing(cache, monkeypatch):
    monkeypatch.setattr(download, "_urlopen", lambda url: io.BytesIO(b"not the file"))
    dest = cache / "file.bin"
    expected = "md5:" + "1" * 32
    with pytest.raises(MentorError, match="wrong checksum") as e:
        fetch("https://example.org/file.bin", dest, expected)
    assert expected in str(e.value) and hashlib.md5(b"not the file").hexdigest() in str(e.value)
    assert not dest.exists() and not list(dest.parent.glob(TEMP_PREFIX + "*"))


def test_fetch_uses_good_cached_copy_without_network(cache):
    dest = cache / "file.bin"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"cached")
    assert fetch("https://example.org/file.bin", dest, _md5(dest)) == dest


class _Served(io.BytesIO):
    """A response whose Content-Length (`length`) may claim more bytes than it holds."""

    def __init__(self, payload: bytes, length: int):
        super().__init__(payload)
        self.length = length


def test_fetch_logs_progress_every_tenth(cache, monkeypatch, capsys):
    payload = bytes(100)
    monkeypatch.setattr(download, "_urlopen", lambda url: _Served(payload, len(payload)))
    monkeypatch.setattr(download, "_CHUNK_BYTES", 7)  # 15 reads, so several steps are crossed
    monkeypatch.setattr(download, "_PROGRESS_MIN_BYTES", 0)
    fetch("https://example.org/big.bin", cache / "big.bin", _md5_of(payload))
    lines = capsys.readouterr().err.splitlines()  # stderr is not a terminal under pytest
    assert 2 <= len(lines) <= 11 and lines[-1].startswith("big.bin: 100%")


def test_fetch_truncated_download_is_a_network_error(cache, monkeypatch):
    monkeypatch.setattr(download, "_urlopen", lambda url: _Served(b"half", 8))
    dest = cache / "file.bin"
    with pytest.raises(MentorError, match="connection closed after 4 of 8 bytes"):
        fetch("https://example.org/file.bin", dest, _md5_of(b"halfhalf"))
    assert not dest.exists() and not list(dest.parent.glob(TEMP_PREFIX + "*"))


def test_extract_renames_complete_folder(tmp_path):
    archive = tmp_path / "a.tar.gz"
    _tar(archive, {"top/one.txt": b"1", "top/sub/two.txt": b"2"})
    into = tmp_path / "out"
    extract(archive, into)
    assert (into / "top" / "sub" / "two.txt").read_bytes() == b"2"
    assert [p.name for p in into.iterdir()] == ["top"]  # no staging folder left behind


def test_extract_damaged_archive_leaves_no_folder(tmp_path):
    archive = tmp_path / "a.tar.gz"
    _tar(archive, {"top/one.txt": b"1" * 10_000})
    archive.write_bytes(archive.read_bytes()[:-40])  # cut off mid-stream
    with pytest.raises(MentorError, match="could not extract"):
        extract(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


# ---- resize ------------------------------------------------------------------------------


def test_resize_and_pad_keeps_aspect_and_centres():
    image = np.full((1, 10, 20, 1), 200, np.uint8)  # 10 rows × 20 columns
    out = resize_and_pad(image, 16)
    assert out.shape == (1, 16, 16, 1) and out.dtype == np.uint8
    # 20 → 16 scales rows 10 → 8: 4 padding rows above and below, content in between.
    assert (out[0, :4] == 0).all() and (out[0, 12:] == 0).all()
    assert (out[0, 4:12] == 200).all()


def test_resize_and_pad_skips_square_images():
    images = _images(2, 16, 16)
    assert resize_and_pad(images, 16) is images
    assert resize_and_pad_one(Image.fromarray(images[0]), 8).shape == (8, 8, 3)


def test_to_channels_round_trip_and_luma():
    gray = _images(2, 5, 5, 1)
    rgb = to_channels(gray, 3)
    assert rgb.shape == (2, 5, 5, 3) and (rgb == gray).all()
    assert np.array_equal(to_channels(rgb, 1), gray)
    assert to_channels(np.array([[[255, 0, 0]]], np.uint8), 1).item() == 76  # 0.299 · 255
    with pytest.raises(MentorError, match="1 .gray. and 3 .RGB."):
        to_channels(gray, 4)


# ---- embedded, npz -----------------------------------------------------------------------


def test_embedded_sets():
    mnist = load_source("embedded:mnist5k")
    assert mnist.x.shape == (5000, 28, 28, 1) and mnist.x.dtype == np.uint8
    assert np.bincount(mnist.y).tolist() == [500] * 10
    assert mnist.class_names == [str(d) for d in range(10)]
    assert load_source("embedded:digits").x.shape == (1797, 8, 8, 1)


def test_usps_train_split(shared_data):
    usps = load_source(f"{shared_data / 'usps.npz'}?split=0")
    assert len(usps) == 7291 and usps.image_shape == (16, 16, 1)


@pytest.fixture
def npz(tmp_path):
    path = tmp_path / "set.npz"
    np.savez(
        path,
        x=_images(6, 4, 4, 1),
        y=np.array([0, 1, 2, 0, 1, 2]),
        other=_images(6, 4, 4, 3),
        y2=np.array([1, 1, 1, 0, 0, 0]),
        split=np.array([0, 0, 1, 1, 0, 1]),
        domain=np.array(["a", "b", "a", "b", "a", "b"]),
        class_names=np.array(["cat", "dog", "eel"]),
    )
    return path


def test_npz_with_query(npz):
    full = load_source(str(npz))
    assert full.class_names == ["cat", "dog", "eel"] and len(full) == 6
    part = load_source(f"npz:{npz}?split=0&domain=a&x=other&y=y2")
    keep = [0, 4]
    with np.load(npz) as arrays:
        assert np.array_equal(part.x, arrays["other"][keep])
        assert part.y.tolist() == arrays["y2"][keep].tolist()


@pytest.mark.parametrize(
    ("arrays", "query", "message"),
    [
        ({"x": np.zeros((2, 4, 4))}, "", r"no array 'y' for the labels \(arrays present: x\)"),
        ({"y": np.zeros(2, int)}, "", r"no array 'x' for the images \(arrays present: y\)"),
        ({"x": np.zeros((2, 4, 4)), "y": np.zeros(2, int)}, "?fold=1", "no such array"),
        ({"x": np.zeros((2, 4, 4)), "y": np.zeros(2, int)}, "?y=9", "no array '9'"),
        ({"x": np.zeros((2, 4, 4)), "y": np.zeros(3, int)}, "", "2 images .* but 3 labels"),
        ({"x": np.zeros((2, 4, 4)), "y": np.zeros(2, int), "s": np.ones(2)}, "?s=0", "keeps 0"),
    ],
)
def test_npz_bad_inputs(tmp_path, arrays, query, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(MentorError, match=message) as e:
        load_source(f"{path}{query}")
    assert "bad.npz" in str(e.value)


def test_npz_missing_or_not_zip(tmp_path):
    with pytest.raises(MentorError, match="no such file"):
        load_source(str(tmp_path / "absent.npz"))
    fake = tmp_path / "fake.npz"
    fake.write_bytes(b"not a zip")
    with pytest.raises(MentorError, match="not an .npz"):
        load_source(str(fake))


def test_unknown_spec_lists_forms():
    with pytest.raises(MentorError, match="not a data source") as e:
        load_source("imagenet:train")
    assert "cifar10:train|test" in str(e.value) and "folder:PATH" in str(e.value)
    with pytest.raises(MentorError, match="mnist:train, mnist:test"):
        load_source("mnist:validation")


# ---- image folders -----------------------------------------------------------------------


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(path)


def test_folder_same_size_round_trips(tmp_path):
    cats, dogs = _images(2, 6, 5), _images(1, 6, 5)
    _save(tmp_path / "cat" / "a.png", cats[0])
    _save(tmp_path / "cat" / "b.PNG", cats[1])
    _save(tmp_path / "dog" / "c.bmp", dogs[0])
    (tmp_path / "dog" / "notes.txt").write_text("ignored")
    data = load_source(str(tmp_path))
    assert data.class_names == ["cat", "dog"] and data.y.tolist() == [0, 0, 1]
    assert np.array_equal(data.x, np.concatenate([cats, dogs]))


def test_folder_gray_only_stays_gray_and_mixed_becomes_rgb(tmp_path):
    gray = _images(2, 4, 4, 1)
    _save(tmp_path / "a" / "x.png", gray[0])
    _save(tmp_path / "b" / "y.png", gray[1])
    assert np.array_equal(load_source(f"folder:{tmp_path}").x, gray)
    rgb = _images(1, 4, 4)
    _save(tmp_path / "b" / "z.png", rgb[0])
    mixed = load_source(f"folder:{tmp_path}")
    assert mixed.image_shape == (4, 4, 3)
    assert np.array_equal(mixed.x[0], np.repeat(gray[0], 3, -1))
    assert np.array_equal(mixed.x[2], rgb[0])


def test_folder_variable_sizes_need_image_size(tmp_path):
    _save(tmp_path / "a" / "big.jpg", np.full((20, 10, 3), 120, np.uint8))
    _save(tmp_path / "b" / "small.jpeg", np.full((8, 12, 3), 60, np.uint8))
    with pytest.raises(MentorError, match="differ in size.*image_size"):
        load_source(f"folder:{tmp_path}")
    data = load_source(f"folder:{tmp_path}", image_size=16)
    assert data.x.shape == (2, 16, 16, 3)
    # 20×10 → 16×8: columns 0-3 and 12-15 are padding, the centre is the (JPEG-coded) colour.
    assert (data.x[0, :, :4] == 0).all() and abs(int(data.x[0, 8, 8, 0]) - 120) <= 2


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"only/a.png": True}, "a classifier needs ≥ 2 classes"),
        ({"a/x.png": True, "b/readme.txt": False}, r"class folder .*b holds no images"),
        ({"a/x.png": True, "b/broken.png": False},
         r"no image of the class folder .*b decodes \(e.g. .*broken.png"),
    ],
)
def test_folder_bad_inputs(tmp_path, layout, message):
    for name, is_image in layout.items():
        path = tmp_path / name
        if is_image:
            _save(path, _images(1, 4, 4)[0])
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"not an image")
    with pytest.raises(MentorError, match=message):
        load_source(f"folder:{tmp_path}")


def _bad_folder(tmp_path):
    """Two classes of good images, then the files a real folder collects: zero bytes, a
    truncated PNG, text named .jpg; and modes that decode (CMYK, 16-bit gray, palette)."""
    good = _images(4, 6, 6)
    for i, name in enumerate(["cat/a.png", "cat/b.png", "dog/c.png", "dog/d.png"]):
        _save(tmp_path / name, good[i])
    (tmp_path / "cat" / "empty.png").write_bytes(b"")
    whole = (tmp_path / "cat" / "a.png").read_bytes()
    (tmp_path / "dog" / "cut.png").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "dog" / "note.jpg").write_text("not a picture")
    Image.fromarray(good[0]).convert("CMYK").save(tmp_path / "cat" / "cmyk.jpg", quality=95)
    Image.fromarray(np.arange(36, dtype=np.uint16).reshape(6, 6) * 1800).save(
        tmp_path / "dog" / "deep.png")
    Image.fromarray(good[2]).convert("P").save(tmp_path / "dog" / "palette.png")
    return good


def test_a_folder_skips_and_counts_files_that_do_not_decode(tmp_path, capsys):
    from mentor.data.files import BadImages

    _bad_folder(tmp_path)
    BadImages.reset()
    data = load_source(f"folder:{tmp_path}")
    # cat: a, b, cmyk (sorted: a, b, cmyk, empty); dog: c, d, deep, palette (cut, note out)
    assert len(data) == 7 and data.y.tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert data.image_shape == (6, 6, 3)
    skipped = {Path(f).name: why for f, why in BadImages.skipped}
    assert sorted(skipped) == ["cut.png", "empty.png", "note.jpg"]
    assert skipped["empty.png"] == "empty file"
    out = capsys.readouterr().out
    assert "skipped 3 of 10 files that do not decode" in out and "(--strict refuses them)" in out
    BadImages.reset(strict=True)
    try:
        with pytest.raises(MentorError, match=r"cannot decode the image .*empty.png.*Without --strict"):
            load_source(f"folder:{tmp_path}")
    finally:
        BadImages.reset()


def test_folder_missing(tmp_path):
    with pytest.raises(MentorError, match="no such folder"):
        load_source(f"folder:{tmp_path / 'absent'}")


# ---- CIFAR-10 ----------------------------------------------------------------------------

CIFAR_NAMES = "airplane automobile bird cat deer dog frog horse ship truck".split()


def _cifar_batch(x_hwc: np.ndarray, labels: list[int]) -> bytes:
    # The release stores each image as its red plane, then green, then blue (CHW, row-major).
    data = x_hwc.transpose(0, 3, 1, 2).reshape(len(x_hwc), 3072)
    return pickle.dumps({b"data": data, b"labels": labels, b"batch_label": b"batch"})


def test_cifar10_train_and_test(cache, monkeypatch):
    train, test = _images(10), _images(3)
    root = "cifar-10-batches-py"
    files = {  # two images per training batch, labels i and i + 1
        f"{root}/data_batch_{i + 1}": _cifar_batch(train[2 * i : 2 * i + 2], [i, i + 1])
        for i in range(5)
    }
    files[f"{root}/test_batch"] = _cifar_batch(test, [9, 0, 4])
    meta = {b"label_names": [n.encode() for n in CIFAR_NAMES], b"num_vis": 3072}
    files[f"{root}/batches.meta"] = pickle.dumps(meta)
    archive = _cached_path(cache, "cifar10", "cifar10")
    _tar(archive, files)
    _register(monkeypatch, "cifar10", archive)

    data = load_source("cifar10:train")
    assert data.x.shape == (10, 32, 32, 3) and np.array_equal(data.x, train)
    assert data.y.tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5]
    assert data.class_names == CIFAR_NAMES
    test_set = load_source("cifar10:test", cache=cache)
    assert np.array_equal(test_set.x, test) and test_set.y.tolist() == [9, 0, 4]


# ---- CIFAR-10-C --------------------------------------------------------------------------

ROWS_PER_SEVERITY = 4


def _cifar10c_files() -> tuple[np.ndarray, np.ndarray, dict[str, bytes]]:
    x, y = _images(5 * ROWS_PER_SEVERITY), rng.integers(0, 10, 5 * ROWS_PER_SEVERITY)
    files = {}
    for name, array in (("fog.npy", x), ("labels.npy", y)):
        buffer = io.BytesIO()
        np.save(buffer, array)
        files[name] = buffer.getvalue()
    return x, y, files


def test_cifar10c_folder(tmp_path):
    x, y, files = _cifar10c_files()
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    sev3 = load_source(f"cifar10c:{tmp_path}?corruption=fog&severity=3")
    rows = slice(2 * ROWS_PER_SEVERITY, 3 * ROWS_PER_SEVERITY)
    assert np.array_equal(sev3.x, x[rows]) and sev3.y.tolist() == y[rows].tolist()
    assert sev3.class_names == CIFAR_NAMES
    assert np.array_equal(load_cifar10c(tmp_path, "fog", 1).x, x[:ROWS_PER_SEVERITY])
    assert len(CIFAR10C_CORRUPTIONS) == 19


def test_cifar10c_default_downloads_release(cache, monkeypatch):
    x, _, files = _cifar10c_files()
    archive = _cached_path(cache, ".", "cifar10c")
    _tar(archive, {f"CIFAR-10-C/{name}": data for name, data in files.items()})
    _register(monkeypatch, "cifar10c", archive)
    sev5 = load_source("cifar10c:?corruption=fog&severity=5")
    assert np.array_equal(sev5.x, x[-ROWS_PER_SEVERITY:])
    assert (cache / "CIFAR-10-C" / "labels.npy").is_file()


@pytest.mark.parametrize(
    ("present", "corruption", "severity", "message"),
    [
        (["labels.npy"], "fog", 1, r"fog.npy is missing.*extracted CIFAR-10-C release"),
        (["fog.npy"], "fog", 1, r"labels.npy is missing"),
        (["fog.npy", "labels.npy"], "fog", 6, "severity must be 1 to 5, got 6"),
        (["fog.npy", "labels.npy"], "rain", 1, "no corruption 'rain'; use one of gaussian_noise"),
    ],
)
def test_cifar10c_bad_inputs(tmp_path, present, corruption, severity, message):
    _, _, files = _cifar10c_files()
    for name in present:
        (tmp_path / name).write_bytes(files[name])
    with pytest.raises(MentorError, match=message):
        load_cifar10c(tmp_path, corruption, severity)


def test_cifar10c_rows_not_divisible_by_five(tmp_path):
    np.save(tmp_path / "fog.npy", _images(7))
    np.save(tmp_path / "labels.npy", np.zeros(7, np.int64))
    with pytest.raises(MentorError, match="5 equal blocks"):
        load_cifar10c(tmp_path, "fog", 1)


# ---- MNIST -------------------------------------------------------------------------------


def _idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(gzip.compress(header + array.tobytes()))


def test_mnist(cache, monkeypatch):
    x, y = _images(3, 28, 28, 1), np.array([7, 2, 1], np.uint8)
    for split in ("train", "test"):
        _idx(_cached_path(cache, "mnist", f"mnist-{split}-images"), x[..., 0], 2051)
        _idx(_cached_path(cache, "mnist", f"mnist-{split}-labels"), y, 2049)
        for kind in ("images", "labels"):
            name = f"mnist-{split}-{kind}"
            _register(monkeypatch, name, _cached_path(cache, "mnist", name))
    data = load_source("mnist:test")
    assert data.x.shape == (3, 28, 28, 1) and np.array_equal(data.x, x)
    assert data.y.dtype == np.int64 and data.y.tolist() == [7, 2, 1]


def test_mnist_bad_magic(cache, monkeypatch):
    images, labels = "mnist-train-images", "mnist-train-labels"
    _idx(_cached_path(cache, "mnist", images), _images(3, 28, 28, 1)[..., 0], 2051)
    _idx(_cached_path(cache, "mnist", labels), _images(3, 28, 28, 1)[..., 0], 2051)  # images
    for name in (images, labels):
        _register(monkeypatch, name, _cached_path(cache, "mnist", name))
    with pytest.raises(MentorError, match="train-labels.*magic number 2051, expected 2049"):
        load_source("mnist:train")


# ---- USPS --------------------------------------------------------------------------------


def _libsvm_line(label: int, values: dict[int, float]) -> str:
    """One LIBSVM line: the label, then index:value pairs (1-based indices)."""
    return " ".join([str(label)] + [f"{i}:{v:g}" for i, v in sorted(values.items())]) + "\n"


def _dense(values: list[float]) -> dict[int, float]:
    return dict(enumerate(values + [-1.0] * (256 - len(values)), start=1))


def test_usps_download_converts_as_torchvision(cache, monkeypatch):
    train = bz2.compress((
        _libsvm_line(1, _dense([-1, 0, 1, 0.5]))  # the digit 0: pixels 0, 127, 255, 191, black
        + _libsvm_line(10, _dense([1.0] * 256))  # the digit 9: all white
        + _libsvm_line(5, {1: -1, 256: 1})  # LIBSVM leaves out zeros: value 0 is 127
    ).encode())
    test = bz2.compress(_libsvm_line(3, _dense([-0.631] * 256)).encode())
    asked = _serve(monkeypatch, {"usps-train": train, "usps-test": test})

    data = load_source("usps:train")
    assert data.x.shape == (3, 16, 16, 1) and data.x.dtype == np.uint8
    assert data.y.tolist() == [0, 9, 4] and data.class_names == [str(d) for d in range(10)]
    # (v + 1) / 2 · 255, truncated: -1 → 0, 0 → 127.5 → 127, 1 → 255, 0.5 → 191.25 → 191
    assert data.x[0, 0, :4, 0].tolist() == [0, 127, 255, 191]
    assert (data.x[0].ravel()[4:] == 0).all() and (data.x[1] == 255).all()
    sparse = data.x[2].ravel()
    assert (sparse[0], sparse[-1]) == (0, 255) and (sparse[1:-1] == 127).all()
    assert asked == [DOWNLOADS["usps-train"].url]
    assert (cache / "usps" / "usps.bz2").read_bytes() == train

    held_out = load_source("usps:test")
    assert held_out.y.tolist() == [2] and (held_out.x == 47).all()  # 0.369 / 2 · 255 = 47.05
    monkeypatch.setattr(download, "_urlopen", _offline)  # both are cached now
    assert np.array_equal(load_source("usps:train").x, data.x)


def test_usps_checksums_are_torchvisions():
    assert DOWNLOADS["usps-train"].checksum == "md5:ec16c51db3855ca6c91edd34d0e9b197"
    assert DOWNLOADS["usps-test"].checksum == "md5:8ea070ee2aca1ac39742fdd1ef5ed118"
    assert DOWNLOADS["usps-train"].url.endswith("libsvmtools/datasets/multiclass/usps.bz2")


def test_usps_wrong_checksum_is_refused(cache, monkeypatch):
    monkeypatch.setattr(download, "_urlopen", lambda url: io.BytesIO(b"an error page"))
    with pytest.raises(MentorError, match="wrong checksum") as e:
        load_source("usps:train")
    assert DOWNLOADS["usps-train"].checksum in str(e.value)
    assert not (cache / "usps" / "usps.bz2").exists()


def test_usps_offline_says_where_to_put_the_file(cache):
    with pytest.raises(MentorError, match="could not download") as e:
        load_source("usps:test")
    message = str(e.value)
    assert DOWNLOADS["usps-test"].url in message
    assert str(cache / "usps" / "usps.t.bz2") in message
    assert DOWNLOADS["usps-test"].checksum in message


@pytest.mark.parametrize("line", ["11 1:0.5\n", "0 1:0.5\n", "3 257:0.5\n", "3 1=0.5\n"])
def test_usps_bad_line_names_file_and_line(cache, monkeypatch, line):
    _serve(monkeypatch, {"usps-test": bz2.compress((_libsvm_line(1, {1: 0}) + line).encode())})
    with pytest.raises(MentorError, match=r"usps.t.bz2, line 2: not a USPS image"):
        load_source("usps:test")


def test_usps_not_bz2_is_a_clear_error(cache, monkeypatch):
    _serve(monkeypatch, {"usps-test": b"plain text, not bz2"})
    with pytest.raises(MentorError, match="cannot read .*usps.t.bz2.*downloads it again"):
        load_source("usps:test")


# ---- SVHN --------------------------------------------------------------------------------


def test_svhn(cache, monkeypatch):
    x, digits = _images(4), np.array([10, 1, 9, 10])
    path = _cached_path(cache, "svhn", "svhn-extra")
    scipy.io.savemat(path, {"X": x.transpose(1, 2, 3, 0), "y": digits[:, None].astype(np.uint8)})
    _register(monkeypatch, "svhn-extra", path)
    data = load_source("svhn:extra")
    assert np.array_equal(data.x, x) and data.y.tolist() == [0, 1, 9, 0]
    assert data.class_names == [str(d) for d in range(10)]


# ---- Flowers102 --------------------------------------------------------------------------


def test_flowers102(cache, monkeypatch):
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (90, 90, 90), (10, 10, 10), (250,) * 3]
    sizes = [(40, 30), (30, 50), (24, 24), (35, 20), (20, 35), (30, 30)]  # height, width
    jpgs = {}
    for i, (colour, (h, w)) in enumerate(zip(colours, sizes), start=1):
        buffer = io.BytesIO()
        Image.new("RGB", (w, h), colour).save(buffer, "JPEG", quality=95)
        jpgs[f"jpg/image_{i:05d}.jpg"] = buffer.getvalue()
    archive = _cached_path(cache, "flowers102", "flowers102-images")
    _tar(archive, jpgs)
    labels = _cached_path(cache, "flowers102", "flowers102-labels")
    scipy.io.savemat(labels, {"labels": np.array([[1, 2, 3, 102, 2, 1]], np.uint8)})
    setid = _cached_path(cache, "flowers102", "flowers102-setid")
    ids = {"trnid": [[1, 4]], "valid": [[2, 3]], "tstid": [[6, 5]]}
    scipy.io.savemat(setid, {k: np.array(v, np.uint16) for k, v in ids.items()})
    _register(monkeypatch, "flowers102-images", archive)
    _register(monkeypatch, "flowers102-labels", labels)
    _register(monkeypatch, "flowers102-setid", setid)

    train = load_source("flowers102:train", image_size=16)
    assert train.x.shape == (2, 16, 16, 3) and train.y.tolist() == [0, 101]
    assert train.num_classes == 102
    # Image 1 is 40×30 → 16×12: two padding columns each side, red in the middle.
    assert (train.x[0, :, :2] == 0).all() and (train.x[0, :, -2:] == 0).all()
    assert np.abs(train.x[0, 8, 8].astype(int) - colours[0]).max() <= 3
    test = load_source("flowers102:test")
    assert test.x.shape == (2, 160, 160, 3) and test.y.tolist() == [0, 1]


# ---- per-class subsets -------------------------------------------------------------------


def _mnist_files(cache, monkeypatch, labels: np.ndarray) -> np.ndarray:
    """Cached MNIST idx files (both splits) holding one image per label; returns the images."""
    x = _images(len(labels), 28, 28, 1)
    for split in ("train", "test"):
        _idx(_cached_path(cache, "mnist", f"mnist-{split}-images"), x[..., 0], 2051)
        _idx(_cached_path(cache, "mnist", f"mnist-{split}-labels"), labels.astype(np.uint8), 2049)
        for kind in ("images", "labels"):
            name = f"mnist-{split}-{kind}"
            _register(monkeypatch, name, _cached_path(cache, "mnist", name))
    return x


def _rows(subset, full) -> list[int]:
    """The row of `full` each image of `subset` is (images are random, so unique)."""
    flat = full.x.reshape(len(full), -1)
    return [int(np.flatnonzero((flat == image.ravel()).all(1))[0]) for image in subset.x]


def test_per_class_on_a_download_source(cache, monkeypatch):
    labels = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4, 6, 2, 6, 4,
                       3, 3, 8, 3, 2, 7, 9, 5, 0, 2, 8, 8, 4, 1, 9, 7, 1, 6, 9, 3, 9, 0, 0, 0])
    _mnist_files(cache, monkeypatch, labels)  # every class 3 to 8 times, in no order
    full = load_source("mnist:train")
    two = load_source("mnist:train?per_class=2&seed=5")
    assert len(two) == 20 and np.bincount(two.y).tolist() == [2] * 10
    rows = _rows(two, full)
    assert rows == sorted(rows) and two.y.tolist() == labels[rows].tolist()  # file order kept
    assert two.class_names == full.class_names and two.name == "mnist:train?per_class=2&seed=5"
    again = load_source("mnist:train?seed=5&per_class=2")
    assert np.array_equal(again.x, two.x)  # deterministic, whatever the key order
    # A smaller N with the same seed keeps a subset of the larger N's images.
    assert set(_rows(load_source("mnist:train?per_class=1&seed=5"), full)) <= set(rows)
    # Class 7 has 3 images (rows 13, 29, 39), the fewest: per_class=3 keeps all of them.
    three = _rows(load_source("mnist:train?per_class=3"), full)
    assert len(three) == 30 and [r for r in three if labels[r] == 7] == [13, 29, 39]
    # The seed is the default 0 when not given.
    assert np.array_equal(load_source("mnist:test?per_class=2").x,
                          load_source("mnist:test?per_class=2&seed=0").x)


def test_per_class_draw_is_the_documented_rule():
    """Each class's rows, shuffled class by class by one Generator(seed), first N kept: the
    rule the presets' subsets (cifar10:train?per_class=500&seed=0) are pinned to."""
    data = load_source("embedded:mnist5k")
    subset = load_source("embedded:mnist5k?per_class=7&seed=11")
    rng = np.random.default_rng(11)
    expected = np.sort(np.concatenate([np.flatnonzero(data.y == c)[rng.permutation(500)[:7]]
                                       for c in range(10)]))
    assert np.array_equal(subset.x, data.x[expected])
    other_seed = load_source("embedded:mnist5k?per_class=7&seed=12")
    assert not np.array_equal(other_seed.x, subset.x)  # 70 of 5000: a repeat is impossible
    # The rows themselves, pinned: NumPy does not promise Generator streams across releases,
    # and a change would silently give the presets other images than their evidence had.
    pinned = [221, 434, 581, 600, 1001, 1148, 1586, 1832, 2019, 2362, 2604, 2915, 3015, 3212,
              3670, 3756, 4277, 4457, 4710, 4992]  # numpy 2.4.6
    assert np.array_equal(load_source("embedded:mnist5k?per_class=2").x, data.x[pinned])


def test_per_class_on_npz_with_a_selection_and_on_a_folder(npz, tmp_path):
    # domain=a keeps rows 0, 2, 4 (labels cat, eel, dog): one of each class, all kept.
    part = load_source(f"{npz}?domain=a&per_class=1&seed=3")
    with np.load(npz) as arrays:
        assert np.array_equal(part.x, arrays["x"][[0, 2, 4]])
    assert part.y.tolist() == [0, 2, 1] and part.class_names == ["cat", "dog", "eel"]
    assert len(load_source(f"npz:{npz}?per_class=2")) == 6

    folder = tmp_path / "folder"
    for name in ("cat/a.png", "cat/b.png", "cat/c.png", "dog/d.png", "dog/e.png"):
        _save(folder / name, _images(1, 4, 4)[0])
    subset = load_source(f"folder:{folder}?per_class=2&seed=1")
    assert subset.y.tolist() == [0, 0, 1, 1] and subset.class_names == ["cat", "dog"]
    assert len(load_source(f"{folder}?per_class=1")) == 2  # a bare folder path too


def test_per_class_larger_than_a_class_names_it(cache, monkeypatch):
    labels = np.array([0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 5, 6, 7, 8, 9] * 2)
    _mnist_files(cache, monkeypatch, labels)
    assert len(load_source("mnist:train?per_class=2")) == 20
    with pytest.raises(MentorError) as e:
        load_source("mnist:train?per_class=3")
    message = str(e.value)
    assert "per_class=3" in message and "'0' has 2" in message and "'1' has 4" not in message
    assert "at most per_class=2" in message


def test_per_class_with_an_empty_class_says_so():
    data = per_class_subset(load_source("embedded:digits"), 3)
    assert np.bincount(data.y).tolist() == [3] * 10
    with pytest.raises(MentorError, match="'2' has 0.*a class with no images cannot give any"):
        per_class_subset(data.subset(np.flatnonzero(data.y != 2)), 1)


@pytest.mark.parametrize(("spec", "message"), [
    ("embedded:digits?per_class=0", "per_class must be a whole number ≥ 1, got '0'"),
    ("embedded:digits?per_class=-5", "per_class must be a whole number ≥ 1, got '-5'"),
    ("embedded:digits?per_class=ten", "per_class must be a whole number ≥ 1, got 'ten'"),
    ("embedded:digits?per_class=5&seed=-1", "seed must be a whole number ≥ 0, got '-1'"),
    ("embedded:digits?seed=3", "seed= draws a per-class subset and needs per_class=N"),
    ("embedded:digits?per_class=5&per_class=6", "per_class= is given twice"),
    ("mnist:train?per_class=5&split=0",
     r"unknown query key\(s\) 'split'; mnist:train takes only per_class=N and seed=S"),
    ("cifar10:test?limit=9", r"unknown query key\(s\) 'limit'; cifar10:test takes only"),
    ("usps:train?x=a&y=b", r"unknown query key\(s\) 'x', 'y'; usps:train takes only"),
    ("embedded:mnist5k?n=5", r"unknown query key\(s\) 'n'; embedded:mnist5k takes only"),
])
def test_bad_subset_queries_say_what_to_write(cache, spec, message):
    with pytest.raises(MentorError, match=message) as e:
        load_source(spec)
    assert "?per_class=500&seed=0" in str(e.value) or "given twice" in str(e.value)
