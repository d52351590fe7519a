"""Data sources: each loader reads small files written in its source's real format.

Downloads are faked by putting the files in a temporary cache and setting the DOWNLOADS
checksums to theirs; `_urlopen` is replaced so that any attempt to use the network fails.
"""

from __future__ import annotations

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

from mentor.data import download, sources
from mentor.data.download import cache_dir, extract, fetch
from mentor.data.resize import resize_and_pad, resize_and_pad_one, to_channels
from mentor.data.sources import CIFAR10C_CORRUPTIONS, load_cifar10c, load_source
from mentor.errors import MentorError

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
    entry = replace(sources.DOWNLOADS[name], checksum=_md5(path))
    monkeypatch.setitem(sources.DOWNLOADS, name, entry)


def _cached_path(cache: Path, folder: str, name: str) -> Path:
    path = cache / folder / sources.DOWNLOADS[name].filename
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
    assert not dest.exists() and not dest.with_suffix(".bin.part").exists()


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
    assert not dest.exists() and not dest.with_suffix(".bin.part").exists()


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
    assert not dest.exists() and not dest.with_suffix(".bin.part").exists()


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
        ({"a/x.png": True, "b/broken.png": False}, r"cannot decode the image .*broken.png"),
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
