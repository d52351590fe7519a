"""The download catalogue: every file mentor downloads, where it comes from, its checksum and
where it goes in the cache (`cache_dir()`, or the `cache` a loader is given).

`fetch_named` fetches one by name (download.fetch: reused once its checksum matches; offline,
the message says where to put a copy made elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mentor.data.download import fetch


@dataclass(frozen=True)
class Download:
    url: str
    filename: str
    checksum: str
    folder: str  # under the cache folder: where the file goes, and where it is extracted


# md5 sums as published by the data sets' hosts and repeated in torchvision's source.
DOWNLOADS: dict[str, Download] = {
    "cifar10": Download(
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "cifar-10-python.tar.gz",
        "md5:c58f30108f718f92721af3b95e74349a",
        "cifar10",
    ),
    "cifar10c": Download(
        "https://zenodo.org/records/2535967/files/CIFAR-10-C.tar",
        "CIFAR-10-C.tar",
        "md5:56bf5dcef84df0e2308c6dcbcbbd8499",
        "",
    ),
    "mnist-train-images": Download(
        "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
        "train-images-idx3-ubyte.gz",
        "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "mnist",
    ),
    "mnist-train-labels": Download(
        "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "md5:d53e105ee54ea40749a09fcbcd1e9432",
        "mnist",
    ),
    "mnist-test-images": Download(
        "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "md5:9fb629c4189551a2d022fa330f9573f3",
        "mnist",
    ),
    "mnist-test-labels": Download(
        "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        "md5:ec29112dd5afa0611ce80d1b7f02629c",
        "mnist",
    ),
    "svhn-train": Download(
        "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
        "train_32x32.mat",
        "md5:e26dedcc434d2e4c54c9b2d4a06d8373",
        "svhn",
    ),
    "svhn-test": Download(
        "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
        "test_32x32.mat",
        "md5:eb5a983be6a315427106f1b164d9cef3",
        "svhn",
    ),
    "svhn-extra": Download(
        "http://ufldl.stanford.edu/housenumbers/extra_32x32.mat",
        "extra_32x32.mat",
        "md5:a93ce644f1a588dc4d68dda5feec44a7",
        "svhn",
    ),
    # LIBSVM's copy of USPS, the files torchvision's USPS dataset downloads; the site publishes
    # no checksums, these md5 sums are torchvision's (torchvision/datasets/usps.py, split_list).
    "usps-train": Download(
        "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/usps.bz2",
        "usps.bz2",
        "md5:ec16c51db3855ca6c91edd34d0e9b197",
        "usps",
    ),
    "usps-test": Download(
        "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/usps.t.bz2",
        "usps.t.bz2",
        "md5:8ea070ee2aca1ac39742fdd1ef5ed118",
        "usps",
    ),
    "flowers102-images": Download(
        "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz",
        "102flowers.tgz",
        "md5:52808999861908f626f3c1f4e79d11fa",
        "flowers102",
    ),
    "flowers102-labels": Download(
        "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat",
        "imagelabels.mat",
        "md5:e0620be6f572b9609742df49c70aed4d",
        "flowers102",
    ),
    "flowers102-setid": Download(
        "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/setid.mat",
        "setid.mat",
        "md5:a5357ecc9cb78c4bef273ce3793fc85c",
        "flowers102",
    ),
}


def fetch_named(name: str, cache: Path) -> Path:
    """The local copy of the catalogue's file `name`, downloaded into `cache` first if need be."""
    entry = DOWNLOADS[name]
    return fetch(entry.url, cache / entry.folder / entry.filename, entry.checksum)
