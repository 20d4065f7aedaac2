import pytest

from earlyphase.errors import SpecError
from earlyphase.runs import RUNS, get_run
from earlyphase.specs import DataSpec, ModelSpec, PruningSpec, RunSpec, TrainingSpec, format_step, parse_step


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


def test_format_step_inverts_parse_step():
    assert [format_step(n, 391) for n in (0, 100, 391, 7820, 900)] == [
        "0it",
        "100it",
        "1ep",
        "20ep",
        "2ep118it",
    ]
    assert all(parse_step(format_step(n, 391), 391) == n for n in range(0, 2000, 7))


@pytest.mark.parametrize("name", ["paper_resnet20_cifar10", "paper_resnet56_cifar10", "paper_vgg16_cifar10"])
def test_paper_runs_share_the_papers_training(name):
    spec = get_run(name)
    resnet20 = get_run("paper_resnet20_cifar10")
    assert spec.training == resnet20.training and spec.data == resnet20.data
    assert (spec.training.precision, spec.training.data_order, spec.training.warmup) == (
        "fp32",
        "fresh",
        "0it",
    )
    assert spec.model.name == name.split("_")[1]
    # OpenLTH's VGG never prunes its output layer; its ResNets prune every conv and linear weight
    assert spec.pruning.layers_to_ignore == (("fc.weight",) if "vgg" in name else ())


def test_milestones_beyond_the_end_are_refused_naming_them():
    paper = get_run("paper_resnet20_cifar10")
    with pytest.raises(SpecError, match=r"milestone\(s\) 80ep, 120ep at or beyond the end .*40ep = 15640"):
        paper.replace(training=paper.training.replace(steps="40ep"))
    with pytest.raises(SpecError, match=r"milestone\(s\) 120ep at or beyond") as info:
        paper.replace(training=paper.training.replace(steps="120ep"))  # a drop at the last step is none
    assert "\n" not in str(info.value)
    assert paper.replace(training=paper.training.replace(steps="120ep1it")).total_iterations == 46_921


def test_scaled_milestones_keep_their_fractions_of_training():
    paper = get_run("paper_resnet20_cifar10")
    short = paper.replace(training=paper.training.replace(steps="40ep", milestones=()))
    assert short.scaled_milestones(paper) == ("20ep", "30ep")
    # 80ep of 160ep is half of 1000 iterations; 120ep three quarters
    assert paper.replace(training=paper.training.replace(steps="1000it", milestones=())).scaled_milestones(
        paper
    ) == ("1ep109it", "1ep359it")
    # another batch size: the fractions are kept in iterations of the new epoch (100 per epoch at 500)
    wide = short.replace(data=short.data.replace(batch_size=500))
    assert wide.scaled_milestones(paper) == ("20ep", "30ep") and wide.data.iterations_per_epoch == 100


def test_data_order_and_precision_are_in_every_key():
    base = get_run("smoke_synthetic")
    assert (base.training.data_order, base.training.precision) == ("fresh", "fp32")
    assert {"data_order": "fresh", "precision": "fp32"}.items() <= base.training.to_dict().items()
    variants = [base.replace(training=base.training.replace(**change))
                for change in ({"data_order": "replay"}, {"precision": "bf16"})]  # fmt: skip
    assert len({base.key(), *(v.key() for v in variants)}) == 3
    assert all(RunSpec.from_json(v.to_json()) == v for v in variants)


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
        base.replace(training=base.training.replace(milestones=("50it",))),
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
        lambda: TrainingSpec(data_order="shuffled"),
        lambda: TrainingSpec(precision="fp16"),
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


def test_pooled_subset_is_keyed_only_when_used():
    plain = DataSpec("fashion_mnist")
    assert not {"image_size", "train_subset"} & set(plain.to_dict())
    derived = DataSpec("fashion_mnist", image_size=14, train_subset=20_000)
    assert derived.to_dict()["image_size"] == 14 and derived.to_dict()["train_subset"] == 20_000
    assert len({plain.key(), derived.key(), derived.replace(image_size=7).key()}) == 3
    assert DataSpec.from_json(derived.to_json()) == derived
    assert derived.input_shape == (1, 14, 14) and plain.input_shape == (1, 28, 28)
    assert (derived.train_examples, derived.iterations_per_epoch) == (20_000, 157)  # ceil(20000 / 128)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"image_size": 5}, "image_size must divide fashion_mnist's 28×28"),
        ({"image_size": -2}, "image_size must divide"),
        ({"train_subset": 1005}, r"train_subset must be a multiple of 10 classes in \[0, 60000\]"),
        ({"train_subset": 60_000, "validation_examples": 5000}, r"in \[0, 55000\]"),
    ],
)
def test_pooled_subset_sizes_are_refused_with_one_line(fields, message):
    with pytest.raises(SpecError, match=message) as info:
        DataSpec("fashion_mnist", **fields)
    assert "\n" not in str(info.value)
