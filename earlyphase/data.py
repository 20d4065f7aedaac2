"""Datasets: loaded once as uint8 tensors, kept on the training device, batched deterministically.

The batch of iteration t is a pure function of (seed, t): data epoch e = t // batches_per_epoch
uses a permutation (and augmentation draws) from a generator seeded by (seed, e), so a run can
rewind or resume to any iteration and see exactly the batches it would have seen.

A run may hold out a validation split from the training set (``DataSpec.validation_examples``):
class-balanced and chosen by a fixed generator, so it is the same for every run seed; training
(and an epoch) covers only the remaining examples. Searches select settings on it, never on the test set.

Two derivatives make CPU-scale runs cheaper (docs/experiments.md A1): ``DataSpec.image_size`` average-pools
both splits at load (Fashion-MNIST 28×28 → 14×14), ``DataSpec.train_subset`` trains on a fixed
class-balanced subset of the remaining training examples, the same for every seed. The test set is
always the whole test split.

Where data live: the ``data_dir`` argument, else ``$EARLYPHASE_DATA_DIR``, else the defaults
(Debian's ``/usr/share/datasets/fashion-mnist`` for Fashion-MNIST, then ``~/.cache/earlyphase/data``).
If nothing is found there, torchvision downloads into the given directory (or the cache).
"""

from __future__ import annotations

import codecs
import copy
import dataclasses
import functools
import gzip
import os
import pickle
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from earlyphase.catalog import DATASETS, dataset_info
from earlyphase.errors import DataUnavailable, SpecError
from earlyphase.specs import DataSpec

DEFAULT_ROOT = Path("~/.cache/earlyphase/data").expanduser()
FASHION_MNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
PAD = 4  # random crop: pixels of zero padding (value 0 in uint8, i.e. black before normalisation)
VALIDATION_SEED = 314_159  # the validation split's generator: fixed, independent of every run seed
SUBSET_SEED = 271_828  # the training subset's generator (DataSpec.train_subset): fixed likewise


def load_split(dataset: str, train: bool, data_dir: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, C, H, W) and int64 labels (N,) on the CPU; cached per process."""
    dataset_info(dataset)
    directory = data_dir or os.environ.get("EARLYPHASE_DATA_DIR")
    resolved = str(Path(directory).expanduser().resolve()) if directory else None
    return _load_cached(dataset, train, resolved)


def average_pool(images: torch.Tensor, side: int) -> torch.Tensor:
    """uint8 images (N, C, H, W) averaged over blocks of (H // side) × (W // side) pixels, rounded to
    uint8; ``side`` 0 keeps them."""
    if not side or images.shape[-2:] == (side, side):
        return images
    factor = (images.shape[-2] // side, images.shape[-1] // side)
    return torch.nn.functional.avg_pool2d(images.float(), factor).round_().to(torch.uint8)


@functools.lru_cache(maxsize=8)
def _load_cached(dataset: str, train: bool, data_dir: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    if dataset == "synthetic":
        return _synthetic(train)
    if dataset == "cifar10":
        return _cifar10(train, data_dir)
    return _idx_dataset(dataset, train, data_dir)


def _download(dataset_class: str, root: Path, train: bool) -> Exception | None:
    """Let torchvision download into ``root``; the error if it could not."""
    try:
        import torchvision

        getattr(torchvision.datasets, dataset_class)(str(root), train=train, download=True)
    except Exception as error:
        return error
    return None


# --- CIFAR-10: the python pickle batches, read with an unpickler that only admits numpy arrays ---


def _latin1_encode(text: str, encoding: str) -> bytes:
    """``_codecs.encode`` as Python 3 protocol-2 pickles use it for bytes, and nothing else."""
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only the globals that rebuild numpy arrays (and bytes); refuses any other callable."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One ``cifar-10-batches-py`` file: images (n, 3, 32, 32) uint8 and labels (n,) int64."""
    try:
        with open(path, "rb") as f:
            batch = _NumpyOnlyUnpickler(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as error:
        raise DataUnavailable(f"{path} is not a CIFAR-10 batch file: {_one_line(error)}") from error
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
        raise DataUnavailable(f"{path}: data {data.shape} and labels {labels.shape} are not CIFAR-10 shaped")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_folder(root: Path, names: list[str]) -> Path | None:
    for folder in (root / "cifar-10-batches-py", root):
        if all((folder / name).is_file() for name in names):
            return folder
    return None


def _cifar10(train: bool, data_dir: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    root = Path(data_dir) if data_dir else DEFAULT_ROOT
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    folder = _cifar_folder(root, names)
    if folder is None:
        error = _download("CIFAR10", root, train)
        folder = _cifar_folder(root, names)
        if folder is None:
            reason = f"download failed: {type(error).__name__}" if error else "download left no files"
            raise DataUnavailable(
                f"CIFAR-10 not found in {root} ({reason}); "
                "pass --data-dir DIR (or set EARLYPHASE_DATA_DIR) with DIR/cifar-10-batches-py"
            )
    parts = [_read_cifar_batch(folder / name) for name in names]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(images), torch.from_numpy(labels)


# --- MNIST and Fashion-MNIST: IDX files, optionally gzipped --------------------------------------

_IDX_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_TORCHVISION = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST"}


def _read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte IDX file (plain or .gz) as a uint8 array of its declared shape."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise DataUnavailable(f"cannot read {path}: {_one_line(error)}") from error
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08" or not 1 <= raw[3] <= 4 or len(raw) < 4 + 4 * raw[3]:
        raise DataUnavailable(f"{path} is not an unsigned-byte IDX file (bad magic number or header)")
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise DataUnavailable(f"{path} holds {body.size} bytes of data but its header declares {shape}")
    return body.reshape(shape)


def _find_idx(directory: Path, dataset: str, name: str) -> Path | None:
    for folder in (directory, directory / _TORCHVISION[dataset] / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _find_idx_pair(directories: list[Path], dataset: str, train: bool) -> tuple[Path, Path] | None:
    for directory in directories:
        images, labels = (_find_idx(directory, dataset, name) for name in _IDX_FILES[train])
        if images and labels:
            return images, labels
    return None


def _idx_dataset(dataset: str, train: bool, data_dir: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    root = Path(data_dir) if data_dir else DEFAULT_ROOT
    searched = [root] if data_dir or dataset != "fashion_mnist" else [FASHION_MNIST_DEBIAN, root]
    found = _find_idx_pair(searched, dataset, train)
    if found is None:
        error = _download(_TORCHVISION[dataset], root, train)
        found = _find_idx_pair([root], dataset, train)
        if found is None:
            reason = f"download failed: {type(error).__name__}" if error else "download left no files"
            hint = "apt-get install dataset-fashion-mnist, or " if dataset == "fashion_mnist" else ""
            raise DataUnavailable(
                f"{dataset} IDX files not found in {' or '.join(map(str, searched))} ({reason}); "
                f"{hint}pass --data-dir (or set EARLYPHASE_DATA_DIR) with the IDX files"
            )
    x, y = (_read_idx(path) for path in found)
    _, height, width = DATASETS[dataset].shape
    if x.ndim != 3 or x.shape[1:] != (height, width) or y.ndim != 1 or len(x) != len(y):
        raise DataUnavailable(f"{dataset}: images {x.shape} and labels {y.shape} do not match")
    if y.size and y.max() >= DATASETS[dataset].num_classes:
        raise DataUnavailable(f"{dataset}: {found[1]} holds label {y.max()}, beyond its classes")
    return torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


# --- synthetic: fixed class prototypes plus per-example noise ------------------------------------

SYNTHETIC_SIGNAL, SYNTHETIC_NOISE = 14.0, 80.0  # pixel units: learnable, far from trivially separable


def _synthetic(train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed random per-class prototype images plus Gaussian noise per example, clipped to uint8."""
    info = DATASETS["synthetic"]
    uniform = torch.rand((info.num_classes, *info.shape), generator=torch.Generator().manual_seed(0))
    prototypes = 128 + (2 * uniform - 1) * SYNTHETIC_SIGNAL
    g = torch.Generator().manual_seed(1 if train else 2)
    n = info.train_size if train else info.test_size
    labels = torch.randint(info.num_classes, (n,), generator=g)
    noise = torch.randn((n, *info.shape), generator=g) * SYNTHETIC_NOISE
    images = (prototypes[labels] + noise).clamp(0, 255).round().to(torch.uint8)
    return images, labels


# --- class-balanced subsets and the validation split ---------------------------------------------


def balanced_subset(labels: torch.Tensor, n: int, num_classes: int, seed: int) -> torch.Tensor:
    """Sorted indices (CPU int64) of ``n`` examples, ``n / num_classes`` of each class, chosen
    uniformly at random within each class by a generator seeded with ``seed``."""
    if n < 1 or n % num_classes:
        raise SpecError(f"subset size must be a positive multiple of the {num_classes} classes, got {n}")
    labels = labels.cpu()
    per_class = n // num_classes
    counts = torch.bincount(labels, minlength=num_classes)
    if int(counts.min()) < per_class:
        raise SpecError(
            f"a balanced subset of {n} needs {per_class} examples per class; the smallest class has "
            f"{int(counts.min())}"
        )
    g = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(len(labels), generator=g)
    by_class = shuffled[torch.sort(labels[shuffled], stable=True).indices]  # random order within a class
    class_start = torch.cumsum(counts, 0) - counts
    chosen = (class_start.unsqueeze(1) + torch.arange(per_class)).flatten()
    return by_class[chosen].sort().values


def validation_indices(labels: torch.Tensor, n: int, num_classes: int) -> torch.Tensor:
    """The training-set indices held out for validation: a class-balanced subset of ``n`` drawn with
    :data:`VALIDATION_SEED`, so every run seed holds out the same examples (and a smaller split is
    part of a larger one)."""
    return balanced_subset(labels, n, num_classes, VALIDATION_SEED)


# --- device-resident training data ---------------------------------------------------------------


class TrainData:
    """A dataset on ``device`` with deterministic, randomly accessible training batches."""

    def __init__(
        self, spec: DataSpec, seed: int, device: torch.device | str = "cpu", data_dir: str | None = None
    ):
        self.spec = spec
        self.seed = seed
        self.device = torch.device(device)
        self.info = dataclasses.replace(DATASETS[spec.dataset], shape=spec.input_shape)
        self.augment = self.info.default_augment if spec.augment is None else spec.augment
        train_x, train_y = load_split(spec.dataset, True, data_dir)
        test_x, test_y = load_split(spec.dataset, False, data_dir)
        train_x, train_y = average_pool(train_x, spec.image_size).to(self.device), train_y.to(self.device)
        self.test_x, self.test_y = (
            average_pool(test_x, spec.image_size).to(self.device),
            test_y.to(self.device),
        )
        self.validation_x = self.validation_y = None
        if spec.validation_examples:
            held_out = validation_indices(train_y, spec.validation_examples, self.info.num_classes)
            held_out = held_out.to(self.device)
            kept = torch.ones(len(train_y), dtype=torch.bool, device=self.device)
            kept[held_out] = False
            self.validation_x, self.validation_y = train_x[held_out], train_y[held_out]
            train_x, train_y = train_x[kept], train_y[kept]
        if spec.train_subset:
            subset = balanced_subset(train_y, spec.train_subset, self.info.num_classes, SUBSET_SEED)
            subset = subset.to(self.device)
            train_x, train_y = train_x[subset], train_y[subset]
        # The epoch of the lr schedule and of step strings; a view keeps it while its own epochs differ.
        self.iterations_per_epoch = -(-len(train_x) // spec.batch_size)
        channels = len(self.info.mean)
        self._mean = torch.tensor(self.info.mean, device=self.device).view(1, channels, 1, 1)
        self._std = torch.tensor(self.info.std, device=self.device).view(1, channels, 1, 1)
        self._use_train_set(train_x, train_y)

    def _use_train_set(self, train_x: torch.Tensor, train_y: torch.Tensor) -> None:
        self.train_x, self.train_y = train_x, train_y
        # Zero padding in uint8 (black), applied once to the whole train set; crops index into it.
        self.padded_x = torch.nn.functional.pad(train_x, (PAD,) * 4) if self.augment else None
        self.train_size = len(train_x)
        self.batches_per_epoch = -(-self.train_size // self.spec.batch_size)
        self._epoch: int | None = None

    @property
    def has_validation(self) -> bool:
        return self.validation_x is not None

    def view(
        self,
        train_x: torch.Tensor,
        train_y: torch.Tensor,
        test: tuple[torch.Tensor, torch.Tensor] | None = None,
        augment: bool | None = None,
    ) -> TrainData:
        """This data with the training set replaced (uint8 images and labels on the device), and the
        test set and augmentation if given: same seed, batch size and ``iterations_per_epoch`` (the
        schedule's epoch). Batches are drawn exactly as here, with data epochs over the new set."""
        view = copy.copy(self)
        view.augment = self.augment if augment is None else augment
        if test is not None:
            view.test_x, view.test_y = test
        view._use_train_set(train_x, train_y)
        return view

    def reseeded(self, seed: int) -> TrainData:
        """This data (the same tensors, nothing copied) with the data order of ``seed``."""
        if seed == self.seed:
            return self
        other = copy.copy(self)
        other.seed, other._epoch = seed, None
        return other

    def _draw_epoch(self, epoch: int) -> None:
        """The epoch's permutation and augmentation draws, from a CPU generator seeded by (seed, epoch)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        n = self.train_size
        self._order = torch.randperm(n, generator=g).to(self.device)
        if self.augment:
            self._flip = (torch.rand(n, generator=g) < 0.5).to(self.device)
            self._shift = torch.randint(0, 2 * PAD + 1, (n, 2), generator=g).to(self.device)
        self._epoch = epoch

    def batch(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float32 images and int64 labels of the step at ``iteration``."""
        if iteration < 0:
            raise SpecError(f"iteration must be >= 0, got {iteration}")
        epoch, position = divmod(iteration, self.batches_per_epoch)
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
        """Per-example H×W crops of the padded images at offsets ``shift`` (row, column)."""
        b, c, _, padded_width = padded.shape
        h, w = self.train_x.shape[2:]
        rows = (shift[:, 0:1] + torch.arange(h, device=self.device)).view(b, 1, h, 1)
        x = padded.gather(2, rows.expand(b, c, h, padded_width))
        cols = (shift[:, 1:2] + torch.arange(w, device=self.device)).view(b, 1, 1, w)
        return x.gather(3, cols.expand(b, c, h, w))

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 → float32 ``(x / 255 - mean) / std``; channels_last on CUDA."""
        x = x.float().div_(255).sub_(self._mean).div_(self._std)
        return x.contiguous(memory_format=torch.channels_last) if self.device.type == "cuda" else x

    def eval_batches(
        self, split: str = "test", batch_size: int = 1000
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Un-augmented, normalised batches covering the whole split (test, train or validation) in order."""
        splits = {
            "test": (self.test_x, self.test_y),
            "train": (self.train_x, self.train_y),
            "validation": (self.validation_x, self.validation_y),
        }
        if split not in splits:
            raise SpecError(f"split must be 'test', 'train' or 'validation', got {split!r}")
        if split == "validation" and not self.has_validation:
            raise SpecError("this run holds out no validation split: set validation_examples")
        if batch_size < 1:
            raise SpecError(f"batch_size must be positive, got {batch_size}")
        x, y = splits[split]
        return (
            (self._normalise(x[i : i + batch_size]), y[i : i + batch_size])
            for i in range(0, len(x), batch_size)
        )
