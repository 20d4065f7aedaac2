"""IMP with rewinding on real (small) training runs: exact sparsity, bitwise rewinding, determinism."""

import contextlib
import warnings
from pathlib import Path

import pytest
import torch

from earlyphase.__main__ import main as cli_main
from earlyphase.imp import IMP, run_data_seed
from earlyphase.masks import Mask
from earlyphase.runs import get_run
from earlyphase.specs import ModelSpec, TrainingSpec
from earlyphase.training import autocast

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

K = 20


@pytest.fixture(scope="module")
def smoke():
    spec = get_run("smoke_synthetic")
    imp = IMP(spec, seed=0, device="cpu")
    dense = imp.dense([K])
    return imp, dense


def _prunable(imp, state):
    return {n: state[n] for n in imp.new_model().prunable}


def test_density_after_levels_is_point_eight_to_the_l(smoke):
    imp, dense = smoke
    previous = dense
    assert dense.mask.density == 1.0
    for level in range(1, 5):
        previous = imp.level(level, K, dense.rewind_states[K], previous)
        assert abs(previous.mask.kept - 0.8**level * previous.mask.total) <= level
        assert previous.metrics["density"] == previous.mask.density
        # pruned weights are exactly zero at the end of training: neither weights nor momentum moved
        for name, keep in previous.mask.items():
            assert (previous.state[name][~keep] == 0).all()


def test_level_starts_bitwise_from_iteration_k_times_mask(smoke):
    imp, dense = smoke
    level = imp.level(1, K, dense.rewind_states[K], dense, capture=[K])
    start = level.captured[K]
    rewound = dense.rewind_states[K]
    assert set(start) == set(rewound)
    for name, value in rewound.items():
        expected = value * level.mask[name] if name in level.mask else value
        assert torch.equal(start[name], expected), name


def test_batchnorm_statistics_are_rewound_too():
    spec = get_run("smoke_synthetic")
    spec = spec.replace(
        model=ModelSpec("resnet8"), training=TrainingSpec(steps="40it", milestones=(), eval_every="40it")
    )
    imp = IMP(spec, seed=1, device="cpu")
    dense = imp.dense([10])
    running = [n for n in dense.rewind_states[10] if n.endswith("running_mean")]
    assert running
    # the dense run moved the statistics after iteration 10...
    assert not torch.equal(dense.state[running[0]], dense.rewind_states[10][running[0]])
    level = imp.level(1, 10, dense.rewind_states[10], dense, capture=[10])
    for name in running + [n.replace("running_mean", "num_batches_tracked") for n in running]:
        assert torch.equal(level.captured[10][name], dense.rewind_states[10][name]), name


@pytest.mark.parametrize("data_order", ["fresh", "replay"])
def test_same_seed_same_results_bitwise(data_order):
    spec = get_run("smoke_synthetic")
    spec = spec.replace(training=spec.training.replace(data_order=data_order))
    runs = [list(IMP(spec, seed=3, device="cpu").run(K, levels=2)) for _ in range(2)]
    for a, b in zip(*runs):
        assert a.metrics["test_accuracy"] == b.metrics["test_accuracy"]
        assert all(torch.equal(a.state[n], b.state[n]) for n in a.state)
        assert all(torch.equal(a.mask[n], b.mask[n]) for n in a.mask)
    other = list(IMP(spec, seed=4, device="cpu").run(K, levels=0))[0]
    assert not torch.equal(other.state[next(iter(other.mask))], runs[0][0].state[next(iter(other.mask))])


def _batches(data, iterations=(0, 5, 64, 100)):
    return [data.batch(t) for t in iterations]


def _same_batches(a, b) -> bool:
    return all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))


def test_replay_gives_every_run_the_dense_batches_and_fresh_its_own():
    spec = get_run("smoke_synthetic")
    replay = IMP(spec.replace(training=spec.training.replace(data_order="replay")), seed=3, device="cpu")
    fresh, again = (IMP(spec, seed=3, device="cpu") for _ in range(2))
    dense = _batches(replay.data)
    assert _same_batches(_batches(fresh.data), dense)  # the dense run's order is the same in both modes
    runs = [(1, "none"), (2, "none"), (1, "random_prune"), (1, "random_reinit")]
    for level, intervention in runs:
        assert _same_batches(_batches(replay.run_data(level, intervention)), dense)
        assert not _same_batches(_batches(fresh.run_data(level, intervention)), dense)
        assert _same_batches(
            _batches(fresh.run_data(level, intervention)), _batches(again.run_data(level, intervention))
        )
    seeds = {run_data_seed(3, level, intervention) for level, intervention in runs}
    assert len(seeds) == len(runs) and run_data_seed(3, 0) == 3 and run_data_seed(4, 1) not in seeds
    assert fresh.run_data(0) is fresh.data  # level-0 training (e.g. copies of the dense run) replays it
    # the order is that of TrainData seeded by run_data_seed: the same examples, permuted differently
    x, y = fresh.run_data(1).batch(0)
    assert torch.equal(fresh.data.reseeded(run_data_seed(3, 1)).batch(0)[1], y)
    assert sorted(fresh.run_data(1)._order.tolist()) == list(range(fresh.data.train_size))


def test_fresh_and_replay_levels_start_alike_and_train_differently(smoke):
    imp, dense = smoke
    replay = IMP(imp.spec.replace(training=imp.spec.training.replace(data_order="replay")), 0, "cpu")
    fresh_level = imp.level(1, K, dense.rewind_states[K], dense, capture=[K])
    replay_level = replay.level(1, K, dense.rewind_states[K], dense, capture=[K])
    assert all(torch.equal(fresh_level.captured[K][n], replay_level.captured[K][n]) for n in dense.state)
    assert all(torch.equal(fresh_level.mask[n], replay_level.mask[n]) for n in dense.mask)
    first = next(iter(dense.mask))
    assert not torch.equal(fresh_level.state[first], replay_level.state[first])


def test_precision_is_bf16_autocast_on_cuda_only():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert isinstance(autocast(cpu, "bf16"), contextlib.nullcontext)  # the CPU always trains in fp32
    assert isinstance(autocast(cuda, "fp32"), contextlib.nullcontext)
    with warnings.catch_warnings():  # "CUDA is not available" on a machine without one
        warnings.simplefilter("ignore", UserWarning)
        bf16 = autocast(cuda, "bf16")
    assert isinstance(bf16, torch.autocast) and (bf16.device, bf16.fast_dtype) == ("cuda", torch.bfloat16)


def test_bf16_on_the_cpu_trains_bitwise_like_fp32():
    spec = get_run("smoke_synthetic")
    spec = spec.replace(training=spec.training.replace(steps="20it", milestones=(), eval_every="20it"))
    fp32 = IMP(spec, seed=2, device="cpu").dense([])
    bf16_spec = spec.replace(training=spec.training.replace(precision="bf16"))
    assert bf16_spec.key() != spec.key()
    bf16 = IMP(bf16_spec, seed=2, device="cpu").dense([])
    assert all(torch.equal(fp32.state[n], bf16.state[n]) for n in fp32.state)


def test_dense_training_learns(smoke):
    _, dense = smoke
    assert dense.metrics["test_accuracy"] > 0.5  # 10 classes: chance is 0.1


@pytest.mark.parametrize("name", ["random_prune", "random_reinit"])
def test_baselines_respect_their_masks(smoke, name):
    imp, dense = smoke
    level = imp.level(1, K, dense.rewind_states[K], dense)
    branch = imp.branch(name, 1, K, dense.rewind_states, level.mask)
    assert branch.mask.kept == level.mask.kept
    if name == "random_prune":
        assert any(not torch.equal(branch.mask[n], level.mask[n]) for n in level.mask)
    for n, keep in branch.mask.items():
        assert (branch.state[n][~keep] == 0).all()


def test_layers_to_ignore_are_never_pruned():
    spec = get_run("smoke_synthetic")
    model_prunable = IMP(spec, 0, "cpu").new_model().prunable
    ignored = model_prunable[-1]
    spec = spec.replace(pruning=spec.pruning.replace(layers_to_ignore=(ignored,)))
    imp = IMP(spec, 0, "cpu")
    mask = imp.dense_mask(imp.new_model())
    assert ignored not in mask and isinstance(mask, Mask)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--run", "nope"], "unknown run"),
        (["--run", "smoke_synthetic", "--rewind-iteration", "100000"], "outside training"),
        (["--run", "smoke_synthetic", "--levels", "-1"], "--levels"),
        (["--run", "smoke_synthetic", "--steps", "3 epochs"], "bad step"),
        (["--run", "paper_resnet20_cifar10", "--data-dir", "{empty}"], "cifar"),
    ],
)
def test_cli_refuses_bad_input_with_one_line_and_writes_nothing(argv, message, tmp_path, capsys, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise RuntimeError("no internet")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    argv = [a.replace("{empty}", str(empty)) for a in argv] + ["--out", str(out)]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and message.lower() in err.lower()
    assert not out.exists()


def test_cli_runs_a_chain_and_writes_results(tmp_path, capsys):
    assert (
        cli_main(
            [
                "--run",
                "smoke_synthetic",
                "--rewind-iteration",
                "8",
                "--levels",
                "2",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == ["level", "density", "test_acc", "test_loss", "time_s"]
    assert [line.split()[0] for line in printed[1:]] == ["0", "1", "2"]
    assert (tmp_path / "results.json").exists() and (tmp_path / "masks.pt").exists()


def test_replay_is_bitwise_the_dense_runs_state_at_k(smoke):
    imp, dense = smoke
    replayed = imp.replay(K)
    assert replayed.keys() == dense.rewind_states[K].keys()
    assert all(torch.equal(replayed[name], dense.rewind_states[K][name]) for name in replayed)
    assert not torch.equal(replayed["layers.0.weight"], dense.rewind_states[0]["layers.0.weight"])


def test_levels_report_validation_accuracy_when_a_split_is_held_out():
    from earlyphase.training import evaluate

    spec = get_run("smoke_synthetic")
    spec = spec.replace(data=spec.data.replace(validation_examples=500))
    imp = IMP(spec, seed=0, device="cpu")
    dense = imp.dense([])
    model = imp.new_model()
    model.load_state_dict(dense.state)
    loss, accuracy = evaluate(model, imp.data, "validation")
    assert (dense.metrics["validation_loss"], dense.metrics["validation_accuracy"]) == (loss, accuracy)
    assert 0.3 < accuracy < 1  # learned (chance: 0.1)
    assert "validation_accuracy" not in IMP(get_run("smoke_synthetic"), seed=0).dense([]).metrics


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_cpu_early_phase_run_trains_on_pooled_subset_and_halves_the_weights_per_level():
    run = get_run("fashion_mnist14_resnet8")
    short = run.replace(
        data=run.data.replace(train_subset=500),
        training=run.training.replace(steps="8it", milestones=("6it",), eval_every="8it"),
    )
    imp = IMP(short, seed=0, device="cpu")
    assert imp.data.train_x.shape == (500, 1, 14, 14) and imp.data.test_x.shape == (10_000, 1, 14, 14)
    dense = imp.dense([4])
    total = dense.mask.total
    assert (
        total == 77_072
    )  # ResNet-8 width 1: 144 + 4,608 + 14,336 + 57,344 conv weights (shortcuts too) + 640 fc
    previous = dense
    for level in (1, 2):
        previous = imp.level(level, 4, dense.rewind_states[4], previous)
        assert previous.mask.kept == total // 2**level  # round(0.5 × an even count) each level
        assert 0 < previous.metrics["test_accuracy"] <= 1 and previous.metrics["iterations"] == 4
