"""Data: real file formats written by the tests, safe unpickling, deterministic batches, augmentation."""

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from earlyphase import data
from earlyphase.catalog import DATASETS
from earlyphase.data import PAD, TrainData, load_split
from earlyphase.errors import DataUnavailable, SpecError
from earlyphase.specs import DataSpec

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def _write_cifar(folder: Path, per_batch: int = 4, seed: int = 0) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Files in the real ``cifar-10-batches-py`` format: protocol-2 pickles of byte-keyed dicts."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        pixels = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": pixels,
            b"filenames": [f"img_{i}.png".encode() for i in range(per_batch)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        written[name] = (pixels, labels)
    return written


def _write_idx(path: Path, array: np.ndarray, magic_type: int = 0x08) -> None:
    header = bytes([0, 0, magic_type, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def _refuse_downloads(monkeypatch) -> None:
    def offline(*args, **kwargs):
        raise ConnectionError("no internet\nsecond line")

    for name in ("CIFAR10", "MNIST", "FashionMNIST"):
        monkeypatch.setattr(torchvision.datasets, name, offline)


def _denormalise(x: torch.Tensor, info) -> torch.Tensor:
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    return ((x * std + mean) * 255).round().to(torch.uint8)


@pytest.fixture
def indexed(monkeypatch):
    """'synthetic' replaced by random images whose labels are their indices (train 250, test 150)."""
    g = torch.Generator().manual_seed(7)
    splits = {
        train: (torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g), torch.arange(n))
        for train, n in ((True, 250), (False, 150))
    }
    monkeypatch.setattr(data, "load_split", lambda dataset, train, data_dir=None: splits[train])
    return splits


# --- CIFAR-10 ------------------------------------------------------------------------------------


def test_cifar_reads_real_batch_format(tmp_path):
    written = _write_cifar(tmp_path / "cifar-10-batches-py")
    x, y = load_split("cifar10", True, str(tmp_path))
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.uint8
    assert y.dtype == torch.int64
    assert y.tolist() == sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    # Flat index c*1024 + r*32 + col is channel c (R, G, B planes), row r, column col.
    pixels = written["data_batch_2"][0]
    for c, r, col in ((0, 0, 0), (1, 5, 7), (2, 31, 30)):
        assert x[4 + 1, c, r, col] == pixels[1, c * 1024 + r * 32 + col]
    assert np.array_equal(x[8:12].numpy().reshape(4, 3072), written["data_batch_3"][0])
    # The directory may also be cifar-10-batches-py itself.
    x_test, y_test = load_split("cifar10", False, str(tmp_path / "cifar-10-batches-py"))
    assert x_test.shape == (4, 3, 32, 32) and y_test.tolist() == written["test_batch"][1]


def test_cifar_env_var_and_cache(tmp_path, monkeypatch):
    _write_cifar(tmp_path / "cifar-10-batches-py", per_batch=2)
    monkeypatch.setenv("EARLYPHASE_DATA_DIR", str(tmp_path))
    first = load_split("cifar10", False)
    assert first[0].shape == (2, 3, 32, 32)
    assert load_split("cifar10", False, str(tmp_path)) is first  # same resolved directory, one load


class _RunsShell:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_cifar_unpickler_refuses_non_numpy_globals(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder, per_batch=1)
    marker = tmp_path / "pwned"
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": _RunsShell(marker), b"labels": [0]}, f, protocol=2)
    with pytest.raises(DataUnavailable, match=r"refusing to load global (posix|os|nt)\.system"):
        load_split("cifar10", False, str(tmp_path))
    assert not marker.exists()


def test_cifar_missing_is_one_line(tmp_path, monkeypatch):
    _refuse_downloads(monkeypatch)
    with pytest.raises(DataUnavailable) as caught:
        load_split("cifar10", True, str(tmp_path))
    message = str(caught.value)
    assert "\n" not in message
    assert str(tmp_path) in message and "--data-dir" in message and "ConnectionError" in message


def test_cifar_train_data_defaults_to_augmentation(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py")
    td = TrainData(DataSpec("cifar10", batch_size=8), seed=0, data_dir=str(tmp_path))
    assert td.augment and td.train_size == 20 and td.iterations_per_epoch == 3
    x, y = td.batch(2)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and x.is_contiguous()
    assert not TrainData(DataSpec("cifar10", augment=False), seed=0, data_dir=str(tmp_path)).augment
    # Normalisation: (x / 255 - mean) / std per channel.
    raw, _ = load_split("cifar10", False, str(tmp_path))
    xt, _ = next(td.eval_batches())
    for c in range(3):
        expected = (raw[:, c].float() / 255 - DATASETS["cifar10"].mean[c]) / DATASETS["cifar10"].std[c]
        torch.testing.assert_close(xt[:, c], expected)


# --- IDX: MNIST and Fashion-MNIST ----------------------------------------------------------------


def test_idx_round_trip_plain_and_gzip(tmp_path, monkeypatch):
    _refuse_downloads(monkeypatch)
    rng = np.random.default_rng(1)
    images, labels = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), rng.integers(0, 10, 5)
    _write_idx(tmp_path / "plain" / "train-images-idx3-ubyte", images)
    _write_idx(tmp_path / "plain" / "train-labels-idx1-ubyte", labels)
    x, y = load_split("mnist", True, str(tmp_path / "plain"))
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert np.array_equal(x[:, 0].numpy(), images) and y.tolist() == labels.tolist()

    raw = tmp_path / "tv" / "FashionMNIST" / "raw"  # torchvision's layout, gzipped
    _write_idx(raw / "t10k-images-idx3-ubyte.gz", images[:3])
    _write_idx(raw / "t10k-labels-idx1-ubyte.gz", labels[:3])
    x, y = load_split("fashion_mnist", False, str(tmp_path / "tv"))
    assert np.array_equal(x[:, 0].numpy(), images[:3]) and y.tolist() == labels[:3].tolist()
    with pytest.raises(DataUnavailable):  # MNIST does not pick up Fashion-MNIST's folder
        load_split("mnist", False, str(tmp_path / "tv"))


@pytest.mark.parametrize("corruption", ["magic", "truncated", "gzip"])
def test_idx_corrupt_file_is_refused(tmp_path, corruption):
    images, labels = np.zeros((4, 28, 28), np.uint8), np.zeros(4, np.uint8)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    path = tmp_path / "train-images-idx3-ubyte"
    if corruption == "magic":
        _write_idx(path, images, magic_type=0x09)
    elif corruption == "truncated":
        _write_idx(path, images)
        path.write_bytes(path.read_bytes()[:-10])
    else:
        (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(SpecError) as caught:
        load_split("mnist", True, str(tmp_path))
    assert isinstance(caught.value, DataUnavailable) and "\n" not in str(caught.value)


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian_package(monkeypatch):
    monkeypatch.delenv("EARLYPHASE_DATA_DIR", raising=False)
    x, y = load_split("fashion_mnist", True)
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.uint8
    assert torch.bincount(y).tolist() == [6000] * 10
    assert (x.float().mean() / 255).item() == pytest.approx(DATASETS["fashion_mnist"].mean[0], abs=1e-3)
    x_test, y_test = load_split("fashion_mnist", False)
    assert x_test.shape == (10000, 1, 28, 28) and torch.bincount(y_test).tolist() == [1000] * 10


def test_unknown_dataset():
    with pytest.raises(SpecError, match="unknown dataset 'imagenet'"):
        load_split("imagenet", True)


# --- synthetic -----------------------------------------------------------------------------------


def test_synthetic_is_fixed_and_learnable():
    x, y = load_split("synthetic", True)
    xt, yt = load_split("synthetic", False)
    assert x.shape == (4096, 3, 16, 16) and xt.shape == (1024, 3, 16, 16) and x.dtype == torch.uint8
    assert set(y.tolist()) == set(range(10)) and y.dtype == torch.int64
    assert torch.equal(data._synthetic(True)[0], x)  # procedural and deterministic
    # Nearest class mean on held-out data: well above chance, far from perfect.
    means = torch.stack([x[y == k].float().mean(0) for k in range(10)])
    distances = torch.cdist(xt.float().flatten(1), means.flatten(1))
    accuracy = (distances.argmin(1) == yt).float().mean().item()
    assert 0.5 < accuracy < 0.99


# --- TrainData: deterministic, randomly accessible batches ---------------------------------------


def test_batches_are_a_pure_function_of_seed_and_iteration(indexed):
    spec = DataSpec("synthetic", batch_size=32)
    a, b = TrainData(spec, seed=3), TrainData(spec, seed=3)
    assert a.iterations_per_epoch == 8
    iterations = [0, 1, 7, 8, 9, 30, 100]
    forward = [a.batch(i) for i in iterations]
    backward = {i: b.batch(i) for i in reversed(iterations)}
    for i, (x, y) in zip(iterations, forward):
        assert torch.equal(x, backward[i][0]) and torch.equal(y, backward[i][1])
    assert torch.equal(b.batch(1)[0], forward[1][0])  # after jumping back from epoch 0 to 12
    other = TrainData(spec, seed=4)
    assert not torch.equal(other.batch(0)[1], forward[0][1])


def test_each_epoch_is_a_permutation(indexed):
    images = indexed[True][0]
    td = TrainData(DataSpec("synthetic", batch_size=32), seed=0)
    epochs = []
    for epoch in (0, 5):
        batches = [td.batch(epoch * 8 + i) for i in range(8)]
        assert [len(y) for _, y in batches] == [32] * 7 + [26]
        labels = torch.cat([y for _, y in batches])
        assert sorted(labels.tolist()) == list(range(250))
        x = torch.cat([x for x, _ in batches])
        assert torch.equal(_denormalise(x, DATASETS["synthetic"]), images[labels])  # unaugmented
        epochs.append(labels)
    assert not torch.equal(epochs[0], epochs[1])


def _reference_augmentations(image: torch.Tensor) -> list[tuple[int, int, bool, torch.Tensor]]:
    """Every flip × crop of the image zero-padded by PAD, one example at a time."""
    padded = torch.nn.functional.pad(image, (PAD,) * 4, value=0)
    h, w = image.shape[1:]
    out = []
    for dy in range(2 * PAD + 1):
        for dx in range(2 * PAD + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            out += [(dy, dx, False, crop), (dy, dx, True, crop.flip(2))]
    return out


def test_augmentation_is_flip_and_padded_crop(indexed):
    images = indexed[True][0]
    td = TrainData(DataSpec("synthetic", batch_size=64, augment=True), seed=1)
    draws = []
    for iteration in range(td.iterations_per_epoch):
        x, y = td.batch(iteration)
        for augmented, index in zip(_denormalise(x, DATASETS["synthetic"]), y.tolist()):
            matches = [d for d in _reference_augmentations(images[index]) if torch.equal(d[3], augmented)]
            assert len(matches) == 1
            draws.append(matches[0][:3])
    assert len(draws) == 250
    assert 0.35 < sum(flip for _, _, flip in draws) / len(draws) < 0.65
    assert {dy for dy, _, _ in draws} == set(range(9)) and {dx for _, dx, _ in draws} == set(range(9))
    again = TrainData(DataSpec("synthetic", batch_size=64, augment=True), seed=1)
    assert torch.equal(again.batch(2)[0], td.batch(2)[0])


def test_eval_batches_cover_split_once_unaugmented(indexed):
    td = TrainData(DataSpec("synthetic", batch_size=32, augment=True), seed=0)
    for split, n in (("test", 150), ("train", 250)):
        batches = list(td.eval_batches(split, batch_size=64))
        assert [len(y) for _, y in batches] == [64] * (n // 64) + [n % 64]
        x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
        assert y.tolist() == list(range(n))
        assert torch.equal(_denormalise(x, DATASETS["synthetic"]), indexed[split == "train"][0])
    with pytest.raises(SpecError):
        td.eval_batches("validation")


# --- the validation split ------------------------------------------------------------------------


def _image_keys(images: torch.Tensor) -> set[bytes]:
    return {bytes(row) for row in images.flatten(1).numpy()}


def test_validation_split_is_held_out_class_balanced_and_the_same_for_every_seed():
    info = DATASETS["synthetic"]
    spec = DataSpec("synthetic", batch_size=64, validation_examples=500)
    td = TrainData(spec, seed=0)
    images, labels = load_split("synthetic", True)
    held = data.validation_indices(labels, 500, 10)
    assert torch.equal(td.validation_x, images[held]) and torch.equal(td.validation_y, labels[held])
    assert torch.bincount(td.validation_y, minlength=10).tolist() == [50] * 10
    assert len(td.train_x) == 4096 - 500 and td.iterations_per_epoch == spec.iterations_per_epoch == 57
    # one epoch of batches covers exactly the 3,596 examples not held out
    everything, held_out = _image_keys(images), _image_keys(images[held])
    trained = _image_keys(torch.cat([_denormalise(td.batch(i)[0], info) for i in range(57)]))
    assert len(everything) == 4096 and len(trained) == 3596
    assert trained.isdisjoint(held_out) and trained | held_out == everything
    x = torch.cat([x for x, _ in td.eval_batches("validation", batch_size=128)])
    assert torch.equal(_denormalise(x, info), images[held])
    other = TrainData(spec, seed=5)  # another seed: another data order, the same split
    assert torch.equal(other.validation_x, td.validation_x)
    assert not torch.equal(other.batch(0)[1], td.batch(0)[1])
    assert set(data.validation_indices(labels, 200, 10).tolist()) < set(held.tolist())  # nested
    with pytest.raises(SpecError, match="no validation split"):
        TrainData(DataSpec("synthetic"), seed=0).eval_batches("validation")


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_validation_split_is_500_per_class():
    td = TrainData(DataSpec("fashion_mnist", validation_examples=5000), seed=0)
    assert torch.bincount(td.validation_y, minlength=10).tolist() == [500] * 10
    assert torch.bincount(td.train_y, minlength=10).tolist() == [5500] * 10  # 6,000 of each class in all
    assert (len(td.train_x), td.iterations_per_epoch) == (55_000, 430)


# --- derivatives: pooled images, a fixed training subset ------------------------------------------


def test_average_pool_is_the_rounded_mean_of_each_block():
    rows = [[0, 2, 10, 10], [4, 6, 10, 11], [255, 255, 1, 0], [255, 255, 0, 0]]
    images = torch.tensor(rows, dtype=torch.uint8).view(1, 1, 4, 4)
    pooled = data.average_pool(images, 2)
    assert pooled.dtype == torch.uint8
    assert pooled.view(2, 2).tolist() == [[3, 10], [255, 0]]  # 41/4 = 10.25 -> 10, 1/4 -> 0
    assert data.average_pool(images, 1).item() == 67  # 1074 / 16 = 67.125
    assert data.average_pool(images, 4) is images  # native side: unchanged


def test_pooled_subset_is_fixed_balanced_and_beside_the_validation_split():
    spec = DataSpec("synthetic", batch_size=64, validation_examples=500, image_size=8, train_subset=1000)
    a, b = TrainData(spec, seed=0), TrainData(spec, seed=3)
    assert a.info.shape == (3, 8, 8) and a.train_x.shape == (1000, 3, 8, 8)
    assert a.test_x.shape == (1024, 3, 8, 8)
    # one subset for every seed
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.train_y, b.train_y)
    assert torch.bincount(a.train_y, minlength=10).tolist() == [100] * 10
    assert (a.train_size, a.iterations_per_epoch, spec.iterations_per_epoch) == (1000, 16, 16)
    images, labels = load_split("synthetic", True)
    held = data.validation_indices(labels, 500, 10)
    kept = torch.ones(len(labels), dtype=torch.bool)
    kept[held] = False
    pooled = _mean_of_2x2_blocks(images)
    subset = data.balanced_subset(labels[kept], 1000, 10, data.SUBSET_SEED)
    assert torch.equal(a.train_x, pooled[kept][subset]) and torch.equal(a.train_y, labels[kept][subset])
    assert torch.equal(a.validation_x, pooled[held])  # validation: pooled, never in the subset
    test_images, _ = load_split("synthetic", False)
    assert torch.equal(a.test_x, _mean_of_2x2_blocks(test_images))


def _mean_of_2x2_blocks(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, 16, 16) uint8 → (N, 3, 8, 8): each pixel the rounded mean of its 2×2 block."""
    return images.float().view(-1, 3, 8, 2, 8, 2).mean((3, 5)).round().to(torch.uint8)
