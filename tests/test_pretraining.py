"""Pretraining modes (docs/experiments.md A4): the task transforms, the head swap, the pretraining
view of the data, and pretrained dense runs: ``supervised`` is bitwise ordinary training."""

import pytest
import torch

from earlyphase.data import TrainData
from earlyphase.errors import SpecError
from earlyphase.imp import IMP
from earlyphase.masks import magnitude_prune
from earlyphase.models import build_model
from earlyphase.pretraining import (
    balanced_subset,
    blur,
    check_pretraining,
    pretraining_data,
    random_labels,
    replace_output_layer,
    rotation_task,
)
from earlyphase.runs import get_run
from earlyphase.specs import ModelSpec, PretrainingSpec, RunSpec

P = 20
SMOKE = get_run("smoke_synthetic")  # 2 epochs of 64 iterations, the lr drops after the first


def _pretrained(mode: str, **fields) -> RunSpec:
    return SMOKE.replace(pretraining=PretrainingSpec(mode, f"{P}it", **fields))


def _equal_states(a, b) -> bool:
    return set(a) == set(b) and all(torch.equal(a[n], b[n]) for n in a)


# --- the task transforms ----------------------------------------------------------------------


def test_rotation_labels_balanced_and_fixed_per_seed():
    images = torch.zeros(400, 1, 4, 4, dtype=torch.uint8)
    _, labels = rotation_task(images, seed=0)
    assert torch.bincount(labels).tolist() == [100, 100, 100, 100]
    assert torch.equal(rotation_task(images, seed=0)[1], labels)
    assert not torch.equal(rotation_task(images, seed=1)[1], labels)
    assert sorted(torch.bincount(rotation_task(images[:10], seed=0)[1]).tolist()) == [2, 2, 3, 3]


def test_rotation_is_exact_quarter_turns():
    images = torch.randint(
        0, 256, (64, 3, 5, 5), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )
    rotated, turns = rotation_task(images, seed=3)
    for i in range(len(images)):  # turning the rest of the way round gives the image back exactly
        back = torch.rot90(rotated[i], 4 - int(turns[i]), dims=(-2, -1))
        assert torch.equal(back, images[i])
    # a single bright pixel at the top right lands, counter-clockwise, at: top left, bottom left, bottom right
    marker = torch.zeros(8, 1, 5, 5, dtype=torch.uint8)
    marker[:, 0, 0, 4] = 255
    rotated, turns = rotation_task(marker, seed=0)
    where = {0: (0, 4), 1: (0, 0), 2: (4, 0), 3: (4, 4)}
    for image, r in zip(rotated, turns.tolist()):
        assert image.sum() == 255 and image[0, where[r][0], where[r][1]] == 255


def test_rotation_refuses_non_square_images():
    with pytest.raises(SpecError, match="square"):
        rotation_task(torch.zeros(4, 1, 4, 6, dtype=torch.uint8), seed=0)


def test_random_labels_replace_an_exact_fraction_and_nothing_else():
    n, fraction = 1000, 0.37
    zeros, ones = torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)
    # positions and classes do not depend on the labels: where two label vectors agree after the
    # draw is exactly where labels were replaced; everywhere else each keeps its own label
    a, b = random_labels(zeros, fraction, 10, seed=5), random_labels(ones, fraction, 10, seed=5)
    replaced = a == b
    assert int(replaced.sum()) == 370
    assert (a[~replaced] == 0).all() and (b[~replaced] == 1).all()
    assert a.min() >= 0 and a.max() <= 9 and len(a.unique()) == 10
    assert torch.equal(random_labels(zeros, fraction, 10, seed=5), a)
    other = random_labels(zeros, fraction, 10, seed=6) == random_labels(ones, fraction, 10, seed=6)
    assert int(other.sum()) == 370 and not torch.equal(other, replaced)
    assert torch.equal(random_labels(zeros, 0.0, 10, seed=5), zeros)
    assert int((random_labels(zeros, 1.0, 10, seed=5) == random_labels(ones, 1.0, 10, seed=5)).sum()) == n


def test_blur_keeps_constant_images_and_factor_one_is_identity():
    constant = torch.full((3, 3, 16, 16), 77, dtype=torch.uint8)
    for factor in (2, 4, 8):
        assert torch.equal(blur(constant, factor), constant)
    images = torch.randint(
        0, 256, (5, 3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )
    assert torch.equal(blur(images, 1), images)


def test_blur_averages_a_checkerboard():
    rows, cols = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    board = ((rows + cols) % 2 * 255).to(torch.uint8).view(1, 1, 16, 16)
    blurred = blur(board, 2)
    assert blurred.shape == board.shape and blurred.dtype == torch.uint8
    # away from the border every 2×-down-sampled pixel averages 0 and 255 equally: 127.5, rounded to 128
    assert (blurred[0, 0, 3:-3, 3:-3] == 128).all()
    assert not torch.equal(blur(board, 4), board)


def test_blur_refuses_factors_that_do_not_divide_the_image():
    with pytest.raises(SpecError, match="divide"):
        blur(torch.zeros(1, 1, 28, 28, dtype=torch.uint8), 3)


def test_balanced_subset_is_class_balanced_sized_and_seeded():
    labels = torch.arange(1000) % 10
    index = balanced_subset(labels, 100, 10, seed=0)
    assert len(index) == 100 and len(index.unique()) == 100 and torch.equal(index, index.sort().values)
    assert torch.bincount(labels[index], minlength=10).tolist() == [10] * 10
    assert torch.equal(balanced_subset(labels, 100, 10, seed=0), index)
    assert not torch.equal(balanced_subset(labels, 100, 10, seed=1), index)
    assert torch.equal(balanced_subset(labels, 1000, 10, seed=2), torch.arange(1000))


@pytest.mark.parametrize("n, message", [(105, "multiple"), (0, "multiple"), (1010, "smallest class")])
def test_balanced_subset_refuses_impossible_sizes(n, message):
    with pytest.raises(SpecError, match=message):
        balanced_subset(torch.arange(1000) % 10, n, 10, seed=0)


# --- the head swap ------------------------------------------------------------------------------


def test_head_swap_is_the_fresh_ten_way_output_layer_and_nothing_else():
    spec, shape = ModelSpec("mlp_64_32"), (3, 16, 16)
    four_way = build_model(spec, 4, shape, seed=3)
    state = {n: v + 1 for n, v in four_way.state_dict().items()}  # stands for a pretrained state
    swapped = replace_output_layer(state, spec, 10, shape, seed=3)
    fresh = build_model(spec, 10, shape, seed=3).state_dict()
    assert set(swapped) == set(state)
    assert swapped["fc.weight"].shape == (10, 32)
    assert torch.equal(swapped["fc.weight"], fresh["fc.weight"]) and torch.equal(
        swapped["fc.bias"], fresh["fc.bias"]
    )
    assert all(swapped[n] is state[n] for n in state if not n.startswith("fc."))
    # the output layer is initialised last: 4-way and 10-way networks of a seed share everything else
    assert all(torch.equal(four_way.state_dict()[n], fresh[n]) for n in fresh if not n.startswith("fc."))


# --- the pretraining view of the data -----------------------------------------------------------


def test_view_batches_exactly_like_the_data_it_replaces():
    data = TrainData(SMOKE.data, seed=4)
    same = data.view(data.train_x, data.train_y)
    for t in (0, 63, 64, 130):
        assert all(torch.equal(a, b) for a, b in zip(data.batch(t), same.batch(t)))
    subset = pretraining_data(data, PretrainingSpec("subset", "1it", subset_size=640), seed=4)
    assert subset.train_size == 640 and subset.batches_per_epoch == 10
    assert subset.iterations_per_epoch == data.iterations_per_epoch == 64  # the schedule's epoch
    again = pretraining_data(data, PretrainingSpec("subset", "1it", subset_size=640), seed=4)
    x, y = subset.batch(25)
    assert torch.equal(x, again.batch(25)[0]) and torch.equal(y, again.batch(25)[1])
    assert torch.equal(subset.batch(25)[1], subset.train_y[subset._order[320:384]])


# --- pretrained dense runs ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def dense():
    imp = IMP(SMOKE, seed=0, device="cpu")
    return imp, imp.dense([P])


@pytest.mark.parametrize("data_order", ["fresh", "replay"])
def test_supervised_pretraining_is_bitwise_dense_training(dense, data_order):
    """In both data orders: the pretrained run (pretraining and its continuation are one run) sees the
    dense run's batches, and its levels see the batches of the same levels rewound to k = P."""
    imp, run = dense
    if data_order == "replay":
        imp = IMP(SMOKE.replace(training=SMOKE.training.replace(data_order="replay")), seed=0, device="cpu")
        assert _equal_states(imp.dense([P]).state, run.state)  # the dense run is the same in both modes
    spec = _pretrained("supervised").replace(training=imp.spec.training)
    pretrained_imp = IMP(spec, seed=0, device="cpu")
    pretrained = pretrained_imp.dense([])
    assert sorted(pretrained.rewind_states) == [0, P]
    assert _equal_states(pretrained.rewind_states[P], run.rewind_states[P])
    assert _equal_states(pretrained.rewind_states[0], run.rewind_states[0])
    assert _equal_states(pretrained.state, run.state)
    assert pretrained.metrics["test_accuracy"] == run.metrics["test_accuracy"]
    # and an IMP level from it is the level rewound to k = P
    level = pretrained_imp.level(1, P, pretrained.rewind_states[P], pretrained)
    rewound = imp.level(1, P, run.rewind_states[P], run)
    assert _equal_states(level.state, rewound.state)
    assert all(torch.equal(level.mask[n], rewound.mask[n]) for n in rewound.mask)


def test_reset_optimizer_continues_like_a_run_rewound_to_p(dense):
    imp, run = dense
    reset = IMP(_pretrained("supervised", reset_optimizer=True), seed=0, device="cpu").dense([])
    assert _equal_states(reset.rewind_states[P], run.rewind_states[P])
    assert not _equal_states(reset.state, run.state)  # momentum was dropped at P
    rewound = imp.train_subnetwork(0, P, run.rewind_states[P], run.mask)  # a fresh optimiser at P
    assert _equal_states(reset.state, rewound.state)


@pytest.mark.parametrize("mode", ["random_labels", "rotation", "blur", "subset"])
def test_every_mode_pretrains_then_trains_the_real_task(dense, mode):
    imp, run = dense
    pretrained = IMP(_pretrained(mode, subset_size=640), seed=0, device="cpu").dense([30])
    assert sorted(pretrained.rewind_states) == [0, P, 30]
    assert _equal_states(pretrained.rewind_states[0], run.rewind_states[0])  # the 10-way initialisation
    at_p = pretrained.rewind_states[P]
    assert not torch.equal(at_p["layers.0.weight"], run.rewind_states[P]["layers.0.weight"])
    assert at_p["fc.weight"].shape == (10, 32)
    if mode == "rotation":  # the output layer is the 10-way network's initial one
        assert torch.equal(at_p["fc.weight"], run.rewind_states[0]["fc.weight"])
    phases = [row.get("pretraining_phase", 0.0) for row in pretrained.curve]
    assert phases == [1.0, 0.0, 0.0]
    assert [row["iteration"] for row in pretrained.curve] == [P, 64, 128]
    assert pretrained.metrics["iterations"] == 128 - P
    # 10 classes: chance is 0.1 ± 0.01 on 1024 test examples (random labels reach 0.19, the others more)
    assert pretrained.metrics["test_accuracy"] > 0.15


def test_sparse_pretraining_trains_the_masked_subnetwork(dense):
    imp, run = dense
    mask = magnitude_prune(run.state, run.mask, 0.5)
    spec = _pretrained("rotation", sparse_level=1)
    sparse = IMP(spec, seed=0, device="cpu").dense([], pretraining_mask=mask)
    assert sparse.level == 1 and sparse.metrics["density"] == pytest.approx(0.5, abs=1e-3)
    for state in (sparse.rewind_states[P], sparse.state):
        assert all((state[n][~keep] == 0).all() for n, keep in mask.items())
    assert spec.pretraining.name == "sparse_L1_rotation"
    with pytest.raises(SpecError, match="mask"):
        IMP(spec, seed=0, device="cpu").dense([])
    with pytest.raises(SpecError, match="mask"):
        IMP(_pretrained("rotation"), seed=0, device="cpu").dense([], pretraining_mask=mask)
    with pytest.raises(SpecError, match="sparse"):
        imp.dense([], pretraining_mask=mask)


def test_rewinding_inside_pretraining_is_refused():
    with pytest.raises(SpecError, match="inside pretraining"):
        IMP(_pretrained("blur"), seed=0, device="cpu").dense([10])


# --- the spec -----------------------------------------------------------------------------------


def test_names_and_canonical_keys():
    names = {
        PretrainingSpec().name: "none",
        PretrainingSpec("supervised", "500it").name: "supervised",
        PretrainingSpec("random_labels", "500it").name: "random_labels_1.0",
        PretrainingSpec("random_labels", "500it", label_fraction=0.5).name: "random_labels_0.5",
        PretrainingSpec("rotation", "2ep").name: "rotation",
        PretrainingSpec("blur", "500it").name: "blur_4",
        PretrainingSpec("subset", "500it").name: "subset_1000",
        PretrainingSpec("subset", "500it", subset_size=1024).name: "subset_1024",
        PretrainingSpec("blur", "500it", blur_factor=2, sparse_level=3, sparse_rewind_iteration=500).name: (
            "sparse_L3_k500_blur_2"
        ),
    }
    assert all(name == expected for name, expected in names.items())
    assert PretrainingSpec().to_dict() == {"mode": "none"}  # runs without pretraining keep their keys
    rotation = _pretrained("rotation")
    assert rotation.key() == _pretrained("rotation", blur_factor=2).key()  # blur_factor is not rotation's
    assert (
        len({_pretrained(m).key() for m in ("supervised", "rotation", "blur", "subset")} | {SMOKE.key()}) == 5
    )
    assert _pretrained("blur").key() != _pretrained("blur", blur_factor=2).key()
    assert RunSpec.from_json(rotation.to_json()) == rotation


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"mode": "jigsaw", "iterations": "1it"}, "unknown pretraining mode"),
        ({"mode": "random_labels", "iterations": "1it", "label_fraction": 1.5}, r"\[0, 1\]"),
        ({"mode": "random_labels", "iterations": "1it", "label_fraction": -0.1}, r"\[0, 1\]"),
        ({"mode": "blur", "iterations": "1it", "blur_factor": 0}, "blur factor"),
        ({"mode": "subset", "iterations": "1it", "subset_size": 0}, "subset size"),
        ({"mode": "none", "iterations": "5it"}, "no pretraining iterations"),
        ({"mode": "rotation", "iterations": "0ep"}, "iterations > 0"),
        ({"mode": "rotation", "iterations": "five"}, "bad step"),
        ({"mode": "rotation", "iterations": "1it", "sparse_level": -1}, ">= 0"),
        ({"mode": "none", "sparse_level": 2}, "other than none"),
    ],
)
def test_bad_specs_are_refused(fields, message):
    with pytest.raises(SpecError, match=message):
        PretrainingSpec(**fields)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"mode": "blur", "iterations": "1it", "blur_factor": 3}, "does not divide"),
        ({"mode": "subset", "iterations": "1it", "subset_size": 5000}, "larger than"),
        ({"mode": "subset", "iterations": "1it", "subset_size": 1001}, "not divisible"),
        ({"mode": "supervised", "iterations": "128it"}, "leaves no training"),
        ({"mode": "supervised", "iterations": "2ep"}, "leaves no training"),
    ],
)
def test_pretraining_the_dataset_cannot_do_is_refused_before_launch(fields, message):
    run = SMOKE.replace(pretraining=PretrainingSpec(**fields))
    with pytest.raises(SpecError, match=message):
        check_pretraining(run)
    with pytest.raises(SpecError, match=message):
        IMP(run, seed=0, device="cpu").dense([])


def test_check_pretraining_returns_p_in_iterations():
    assert check_pretraining(SMOKE) == 0
    assert check_pretraining(_pretrained("rotation")) == P
    fashion = get_run("fashion_mnist_lenet")
    assert (
        check_pretraining(fashion.replace(pretraining=PretrainingSpec("blur", "2ep", blur_factor=7))) == 938
    )
    assert check_pretraining(fashion.replace(pretraining=PretrainingSpec("subset", "500it"))) == 500  # 1000
