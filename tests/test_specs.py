import pytest

from earlyphase.errors import SpecError
from earlyphase.runs import RUNS, get_run
from earlyphase.specs import DataSpec, ModelSpec, PruningSpec, RunSpec, TrainingSpec, parse_step


def test_parse_step():
    assert parse_step("160ep", 391) == 62_560
    assert parse_step("500it", 391) == 500
    assert parse_step("2ep100it", 391) == 882
    assert parse_step(7, 391) == parse_step("7", 391) == 7
    for bad in ("", "ep", "1.5ep", "-3it", "-3", "3 epochs"):
        with pytest.raises(SpecError):
            parse_step(bad, 391)


def test_paper_run_is_the_paper_setting():
    spec = get_run("paper_resnet20_cifar10")
    assert spec.data.iterations_per_epoch == 391
    assert spec.total_iterations == 62_560
    assert spec.training.lr_at(0, 391) == pytest.approx(0.1)
    assert spec.training.lr_at(80 * 391 - 1, 391) == pytest.approx(0.1)
    assert spec.training.lr_at(80 * 391, 391) == pytest.approx(0.01)
    assert spec.training.lr_at(120 * 391, 391) == pytest.approx(0.001)
    assert (spec.training.momentum, spec.training.weight_decay, spec.pruning.fraction) == (0.9, 1e-4, 0.2)


def test_warmup_is_linear():
    spec = TrainingSpec(lr=0.4, warmup="4it", milestones=())
    assert [spec.lr_at(i, 10) for i in range(5)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4])


@pytest.mark.parametrize("name", sorted(RUNS))
def test_json_round_trip_and_key(name):
    spec = RUNS[name]
    again = RunSpec.from_json(spec.to_json())
    assert again == spec
    assert again.key() == spec.key()
    assert len(spec.key()) == 16


def test_key_changes_with_every_kind_of_field():
    base = get_run("smoke_synthetic")
    variants = [
        base.replace(data=base.data.replace(batch_size=32)),
        base.replace(model=base.model.replace(width=2)),
        base.replace(training=base.training.replace(lr=0.07)),
        base.replace(training=base.training.replace(milestones=("2ep",))),
        base.replace(pruning=PruningSpec(fraction=0.3)),
    ]
    keys = {v.key() for v in variants} | {base.key()}
    assert len(keys) == len(variants) + 1
    # canonical: field order in the JSON does not depend on construction
    assert base.to_json() == RunSpec.from_dict(dict(reversed(list(base.to_dict().items())))).to_json()


@pytest.mark.parametrize(
    "make",
    [
        lambda: DataSpec("imagenet"),
        lambda: DataSpec("cifar10", batch_size=0),
        lambda: ModelSpec("resnet21"),
        lambda: TrainingSpec(steps="0it"),
        lambda: TrainingSpec(lr=-1.0),
        lambda: TrainingSpec(momentum=1.0),
        lambda: PruningSpec(fraction=0.0),
        lambda: PruningSpec(fraction=1.0),
        lambda: get_run("nope"),
        lambda: get_run("smoke_synthetic").check_rewind(10_000),
        lambda: RunSpec.from_dict({"data": {"dataset": "mnist"}, "model": {"name": "mlp_10"}, "extra": 1}),
    ],
)
def test_bad_specs_are_refused_with_one_line(make):
    with pytest.raises(SpecError) as info:
        make()
    assert "\n" not in str(info.value)


def test_validation_split_is_keyed_only_when_held_out():
    # the keys of the standard runs before validation_examples existed (commit 7ff40cf)
    keys = {
        "paper_resnet20_cifar10": "9275d7a99ec27527",
        "fashion_mnist_lenet": "2690ffdc5ec8c46d",
        "smoke_synthetic": "4c2a159fda9b6c8f",
    }
    assert {name: run.key() for name, run in RUNS.items()} == keys
    assert "validation_examples" not in DataSpec("mnist").to_dict()
    held_out = DataSpec("fashion_mnist", validation_examples=5000)
    assert held_out.to_dict()["validation_examples"] == 5000
    assert held_out.key() != DataSpec("fashion_mnist").key()
    assert DataSpec.from_json(held_out.to_json()) == held_out
    assert (held_out.train_examples, held_out.iterations_per_epoch) == (55_000, 430)  # ceil(55000 / 128)


@pytest.mark.parametrize("examples", [-10, 5005, 60_000])
def test_validation_split_sizes_are_refused_with_one_line(examples):
    with pytest.raises(SpecError, match="multiple of 10 classes") as info:
        DataSpec("fashion_mnist", validation_examples=examples)
    assert "\n" not in str(info.value)
