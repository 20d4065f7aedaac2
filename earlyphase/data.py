"""Datasets: loaded once as uint8 tensors, kept on the training device, batched deterministically.

The batch of iteration t is a pure function of (seed, t): epoch e = t // iterations_per_epoch
uses a permutation (and augmentation draws) from a generator seeded by (seed, e), so a run can
rewind or resume to any iteration and see exactly the batches it would have seen.
"""

from __future__ import annotations

import functools
import gzip
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from earlyphase.errors import DataUnavailable, SpecError
from earlyphase.specs import DataSpec

DEFAULT_ROOT = Path("~/.cache/earlyphase/data").expanduser()
FASHION_MNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
PAD = 4  # pixels of zero padding for the random crop


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    default_augment: bool


INFO = {
    "cifar10": DatasetInfo(
        "cifar10", 10, (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True
    ),
    "fashion_mnist": DatasetInfo("fashion_mnist", 10, (1, 28, 28), (0.2860,), (0.3530,), False),
    "mnist": DatasetInfo("mnist", 10, (1, 28, 28), (0.1307,), (0.3081,), False),
    "synthetic": DatasetInfo("synthetic", 10, (3, 16, 16), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), False),
}


def load_split(dataset: str, train: bool, data_dir: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, C, H, W) and int64 labels (N,) on the CPU; cached per process."""
    if dataset not in INFO:
        raise SpecError(f"unknown dataset {dataset!r}; choose one of {', '.join(INFO)}")
    return _load_cached(dataset, train, data_dir or os.environ.get("EARLYPHASE_DATA_DIR"))


@functools.lru_cache(maxsize=8)
def _load_cached(dataset: str, train: bool, data_dir: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    if dataset == "synthetic":
        return _synthetic(train)
    if dataset == "cifar10":
        return _cifar10(train, data_dir)
    return _idx_dataset(dataset, train, data_dir)


# --- CIFAR-10: the python pickle batches, read with an unpickler that only admits numpy arrays --


class _NumpyOnlyUnpickler(pickle.Unpickler):
    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR-10 batch file")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        batch = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return data, np.asarray(batch[b"labels"], dtype=np.int64)


def _cifar10(train: bool, data_dir: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    roots = [Path(data_dir).expanduser()] if data_dir else [DEFAULT_ROOT]
    folder = next(
        (d for r in roots for d in (r / "cifar-10-batches-py", r) if (d / "test_batch").exists()), None
    )
    if folder is None and not data_dir:
        try:
            import torchvision

            torchvision.datasets.CIFAR10(str(DEFAULT_ROOT), train=train, download=True)
            folder = DEFAULT_ROOT / "cifar-10-batches-py"
        except Exception as error:
            raise DataUnavailable(
                f"CIFAR-10 not found in {DEFAULT_ROOT} and could not be downloaded ({type(error).__name__}); "
                "pass --data-dir holding cifar-10-batches-py"
            ) from None
    if folder is None:
        raise DataUnavailable(
            f"no cifar-10-batches-py in {roots[0]}; pass --data-dir holding cifar-10-batches-py"
        )
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    parts = [_read_cifar_batch(folder / n) for n in names]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(images), torch.from_numpy(labels)


# --- MNIST and Fashion-MNIST: IDX files, optionally gzipped --------------------------------------

_IDX_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_TORCHVISION = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST"}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (plain or .gz) as a uint8 array of its declared shape."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataUnavailable(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise DataUnavailable(f"{path} holds {body.size} bytes of data, its header declares {shape}")
    return body.reshape(shape)


def _find_idx(directory: Path, name: str) -> Path | None:
    for folder in (directory, *(directory / t / "raw" for t in _TORCHVISION.values())):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.exists():
                return candidate
    return None


def _idx_dataset(dataset: str, train: bool, data_dir: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    images_name, labels_name = _IDX_FILES[train]
    if data_dir:
        searched = [Path(data_dir).expanduser()]
    else:
        searched = ([FASHION_MNIST_DEBIAN] if dataset == "fashion_mnist" else []) + [DEFAULT_ROOT]
    for directory in searched:
        images, labels = _find_idx(directory, images_name), _find_idx(directory, labels_name)
        if images and labels:
            break
    else:
        if data_dir:
            raise DataUnavailable(f"no {dataset} IDX files in {data_dir}")
        try:
            import torchvision

            getattr(torchvision.datasets, _TORCHVISION[dataset])(
                str(DEFAULT_ROOT), train=train, download=True
            )
        except Exception as error:
            hint = "apt-get install dataset-fashion-mnist, or " if dataset == "fashion_mnist" else ""
            raise DataUnavailable(
                f"{dataset} not found in {', '.join(map(str, searched))} and could not be downloaded "
                f"({type(error).__name__}); {hint}pass --data-dir"
            ) from None
        images, labels = _find_idx(DEFAULT_ROOT, images_name), _find_idx(DEFAULT_ROOT, labels_name)
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise DataUnavailable(f"{dataset}: images {x.shape} and labels {y.shape} do not match")
    return torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


# --- synthetic: fixed class prototypes plus per-example noise -----------------------------------

SYNTHETIC_SIZES = {True: 4096, False: 1024}
SYNTHETIC_SIGNAL, SYNTHETIC_NOISE = 14.0, 80.0  # nearest-prototype accuracy ≈ 0.85: learnable, not trivial


def _synthetic(train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    info = INFO["synthetic"]
    uniform = torch.rand((info.num_classes, *info.shape), generator=torch.Generator().manual_seed(0))
    prototypes = 128 + (2 * uniform - 1) * SYNTHETIC_SIGNAL
    g = torch.Generator().manual_seed(1 if train else 2)
    n = SYNTHETIC_SIZES[train]
    labels = torch.randint(info.num_classes, (n,), generator=g)
    noise = torch.randn((n, *info.shape), generator=g) * SYNTHETIC_NOISE
    images = (prototypes[labels] + noise).clamp(0, 255).round().to(torch.uint8)
    return images, labels


# --- device-resident training data ---------------------------------------------------------------


class TrainData:
    """A dataset on ``device`` with deterministic, randomly accessible training batches."""

    def __init__(
        self, spec: DataSpec, seed: int, device: torch.device | str = "cpu", data_dir: str | None = None
    ):
        self.spec = spec
        self.seed = seed
        self.device = torch.device(device)
        self.info = INFO[spec.dataset]
        self.augment = self.info.default_augment if spec.augment is None else spec.augment
        train_x, self.train_y = (t.to(self.device) for t in load_split(spec.dataset, True, data_dir))
        self.test_x, self.test_y = (t.to(self.device) for t in load_split(spec.dataset, False, data_dir))
        self.train_x = train_x
        self.padded_x = torch.nn.functional.pad(train_x, (PAD,) * 4) if self.augment else None
        self.train_size = len(train_x)
        self.iterations_per_epoch = -(-self.train_size // spec.batch_size)
        self._mean = torch.tensor(self.info.mean, device=self.device).view(1, -1, 1, 1) * 255
        self._std = torch.tensor(self.info.std, device=self.device).view(1, -1, 1, 1) * 255
        self._epoch: int | None = None

    def _draw_epoch(self, epoch: int) -> None:
        """The epoch's permutation and augmentation draws, from a generator seeded by (seed, epoch)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        n = self.train_size
        self._order = torch.randperm(n, generator=g).to(self.device)
        if self.augment:
            self._flip = (torch.rand(n, generator=g) < 0.5).to(self.device)
            self._shift = torch.randint(0, 2 * PAD + 1, (n, 2), generator=g).to(self.device)
        self._epoch = epoch

    def batch(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float32 images and int64 labels of the step at ``iteration``."""
        epoch, position = divmod(iteration, self.iterations_per_epoch)
        if epoch != self._epoch:
            self._draw_epoch(epoch)
        start = position * self.spec.batch_size
        slots = slice(start, start + self.spec.batch_size)
        index = self._order[slots]
        if self.augment:
            x = self._crop(self.padded_x[index], self._shift[slots])
            x = torch.where(self._flip[slots].view(-1, 1, 1, 1), x.flip(3), x)
        else:
            x = self.train_x[index]
        return self._normalise(x), self.train_y[index]

    def _crop(self, padded: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """Per-example crops of size H×W at offsets ``shift`` (rows, cols) of the padded images."""
        b, c, _, width_padded = padded.shape
        h, w = self.info.shape[1:]
        rows = (shift[:, 0:1] + torch.arange(h, device=self.device)).view(b, 1, h, 1)
        x = padded.gather(2, rows.expand(b, c, h, width_padded))
        cols = (shift[:, 1:2] + torch.arange(w, device=self.device)).view(b, 1, 1, w)
        return x.gather(3, cols.expand(b, c, h, w))

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float() - self._mean) / self._std
        return x.contiguous(memory_format=torch.channels_last) if self.device.type == "cuda" else x

    def eval_batches(
        self, split: str = "test", batch_size: int = 1000
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Un-augmented, normalised batches covering the whole split in order."""
        if split not in ("test", "train"):
            raise SpecError(f"split must be 'test' or 'train', got {split!r}")
        x, y = (self.test_x, self.test_y) if split == "test" else (self.train_x, self.train_y)
        for start in range(0, len(x), batch_size):
            yield self._normalise(x[start : start + batch_size]), y[start : start + batch_size]
