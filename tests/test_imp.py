"""IMP with rewinding on real (small) training runs: exact sparsity, bitwise rewinding, determinism."""

import pytest
import torch

from earlyphase.__main__ import main as cli_main
from earlyphase.imp import IMP
from earlyphase.masks import Mask
from earlyphase.runs import get_run
from earlyphase.specs import ModelSpec, TrainingSpec

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


def test_same_seed_same_results_bitwise():
    spec = get_run("smoke_synthetic")
    runs = [list(IMP(spec, seed=3, device="cpu").run(K, levels=2)) for _ in range(2)]
    for a, b in zip(*runs):
        assert a.metrics["test_accuracy"] == b.metrics["test_accuracy"]
        assert all(torch.equal(a.state[n], b.state[n]) for n in a.state)
        assert all(torch.equal(a.mask[n], b.mask[n]) for n in a.mask)
    other = list(IMP(spec, seed=4, device="cpu").run(K, levels=0))[0]
    assert not torch.equal(other.state[next(iter(other.mask))], runs[0][0].state[next(iter(other.mask))])


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
