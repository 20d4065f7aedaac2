"""Early-phase telemetry: the schedule, the pure metrics, the hook on hand-set weights, a real run."""

import math

import pytest
import torch
from torch import nn

from earlyphase.data import TrainData
from earlyphase.masks import Mask, magnitude_prune
from earlyphase.models import build_model
from earlyphase.specs import DataSpec, ModelSpec, TrainingSpec
from earlyphase.telemetry import EarlyPhaseTelemetry, cosine, l2_distance, log_schedule, sign_flip_fraction
from earlyphase.training import capture_state, evaluate, train

L_RIGHT, L_WRONG = math.log(1 + math.exp(-1)), math.log(1 + math.exp(1))  # CE of logits (1, 0)


class StandIn:
    """Two-class data on the CPU: with identity weights the logits are the inputs."""

    device = torch.device("cpu")
    splits = {
        "test": [(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), torch.tensor([0, 0, 1]))],
        "train": [
            (torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])),
            (torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([1, 1])),
        ],
    }

    def eval_batches(self, split="test", batch_size=1000):
        yield from self.splits[split]


def linear(weight, bias=(0.0, 0.0), batch_norm=False):
    model = nn.Sequential(nn.Linear(2, 2), *([nn.BatchNorm1d(2)] if batch_norm else []))
    model.prunable = ("0.weight",)
    set_weight(model, weight)
    with torch.no_grad():
        model[0].bias.copy_(torch.tensor(bias))
    return model


def set_weight(model, weight):
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor(weight, dtype=torch.float32).view(2, 2))


def values(table, metric, group="all"):
    rows = table[(table.metric == metric) & (table.group == group)]
    return dict(zip(rows.iteration, rows.value))


def test_log_schedule():
    schedule = log_schedule()
    assert schedule[:101] == list(range(101))
    assert all(isinstance(t, int) for t in schedule)
    assert all(a < b for a, b in zip(schedule, schedule[1:]))
    assert schedule[-1] == 4000 and abs(len(schedule) - 161) <= 3
    assert log_schedule(end=5) == [0, 1, 2, 3, 4, 5]
    assert log_schedule(end=50, every_until=3, points=0) == [0, 1, 2, 3, 50]


def test_pure_functions():
    w0, w = torch.tensor([1.0, -2.0, 3.0, 0.0]), torch.tensor([1.0, 2.0, -3.0, 0.0])
    assert float(sign_flip_fraction(w, w0)) == 0.5
    assert float(sign_flip_fraction(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0]))) == 0.5
    assert float(cosine(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]))) == pytest.approx(
        1 / math.sqrt(2)
    )
    assert float(l2_distance(torch.tensor([0.0, 0.0]), torch.tensor([3.0, 4.0]))) == 5.0


# w_0, w_1, w_2 and w_final, flattened row-major: 14, 14, 18 and 30 squared norms
W = [[1, -2, 3, 0], [1, 2, -3, 0], [2, -2, 3, 1]]
W_FINAL = [1, -2, 3, 4]


def drive(split=None):
    model = linear(W[0])
    telemetry = EarlyPhaseTelemetry(model, StandIn(), [0, 1, 2, 7], seed=0, tracked=3, split=split)
    grads = [([1.0, 1.0, 1.0, 1.0], None), ([3.0, 0.0, 0.0, 0.0], [0.0, 4.0]), (None, None)]
    for t, (w, (weight_grad, bias_grad)) in enumerate(zip(W, grads)):
        set_weight(model, w)
        model[0].weight.grad = None if weight_grad is None else torch.tensor(weight_grad).view(2, 2)
        model[0].bias.grad = None if bias_grad is None else torch.tensor(bias_grad)
        telemetry.hook(t, model)
    telemetry.hook(3, model)  # not scheduled
    telemetry.finish({"0.weight": torch.tensor(W_FINAL, dtype=torch.float32).view(2, 2)})
    return telemetry, telemetry.table()


def test_hook_weight_metrics_and_distances():
    telemetry, table = drive()
    assert list(table.columns) == ["iteration", "metric", "group", "value"]
    assert set(table.iteration) == {0, 1, 2} and set(table.group) == {"all"}
    assert values(table, "mean_abs_weight") == pytest.approx({0: 1.5, 1: 1.5, 2: 2.0})
    assert values(table, "sign_flip_fraction") == pytest.approx({0: 0.0, 1: 0.5, 2: 0.25})
    assert values(table, "grad_norm") == pytest.approx({0: 2.0, 1: 5.0})  # no gradients at t=2
    for i, index in enumerate(telemetry.tracked_index.tolist()):
        assert values(table, f"weight_{i}") == {t: W[t][index] for t in range(3)}
    assert len(set(telemetry.tracked_index.tolist())) == 3
    assert values(table, "distance_to_init") == pytest.approx({0: 0, 1: math.sqrt(52), 2: math.sqrt(2)})
    assert values(table, "distance_to_final") == pytest.approx({0: 4, 1: math.sqrt(68), 2: math.sqrt(10)})
    assert values(table, "cosine_to_init") == pytest.approx({0: 1, 1: -12 / 14, 2: 15 / math.sqrt(14 * 18)})
    assert values(table, "cosine_to_final") == pytest.approx(
        {0: 14 / math.sqrt(14 * 30), 1: -12 / math.sqrt(14 * 30), 2: 19 / math.sqrt(18 * 30)}
    )
    assert torch.equal(telemetry.snapshots[1], torch.tensor(W[1], dtype=torch.float32))
    with pytest.raises(RuntimeError):
        telemetry.finish({"0.weight": torch.zeros(2, 2)})


def test_split_into_kept_and_pruned():
    split = Mask({"0.weight": torch.tensor([[True, False], [True, True]])})
    _, table = drive(split)
    assert set(table.group) == {"all", "kept", "pruned"}
    assert values(table, "mean_abs_weight", "kept") == pytest.approx({0: 4 / 3, 1: 4 / 3, 2: 2.0})
    assert values(table, "mean_abs_weight", "pruned") == pytest.approx({0: 2, 1: 2, 2: 2})
    assert values(table, "sign_flip_fraction", "kept") == pytest.approx({0: 0, 1: 1 / 3, 2: 1 / 3})
    assert values(table, "sign_flip_fraction", "pruned") == pytest.approx({0: 0, 1: 1, 2: 0})
    assert values(table, "distance_to_init", "kept") == pytest.approx({0: 0, 1: 6, 2: math.sqrt(2)})
    assert values(table, "distance_to_init", "pruned") == pytest.approx({0: 0, 1: 4, 2: 0})
    assert values(table, "distance_to_final", "kept") == pytest.approx(
        {0: 4, 1: math.sqrt(52), 2: math.sqrt(10)}
    )
    assert values(table, "cosine_to_init", "kept")[1] == pytest.approx(-0.8)
    assert values(table, "cosine_to_init", "pruned")[1] == pytest.approx(-1.0)
    assert values(table, "cosine_to_final", "kept")[2] == pytest.approx(15 / math.sqrt(14 * 26))
    assert values(table, "grad_norm", "kept") == {}


def test_hook_evaluates_test_split_and_first_train_examples():
    model = linear([1, 0, 0, 1])
    telemetry = EarlyPhaseTelemetry(model, StandIn(), [0], seed=0, tracked=4, train_eval_examples=3)
    telemetry.hook(0, model)
    table = telemetry.table()
    assert values(table, "test_accuracy") == pytest.approx({0: 1 / 3})
    assert values(table, "test_loss") == pytest.approx({0: (L_RIGHT + 2 * L_WRONG) / 3})
    assert values(table, "train_accuracy") == pytest.approx({0: 2 / 3})  # the left-out 4th example is right
    assert values(table, "train_loss") == pytest.approx({0: (2 * L_RIGHT + L_WRONG) / 3})


def test_hook_leaves_batch_norm_statistics_and_mode_alone():
    model = linear([1, 0, 0, 1], bias=(5.0, -3.0), batch_norm=True)
    model.train()
    model(torch.randn(8, 2))  # move the running statistics away from their defaults
    before = {k: v.clone() for k, v in model[1].state_dict().items()}
    telemetry = EarlyPhaseTelemetry(model, StandIn(), [0], seed=0, tracked=4)
    telemetry.hook(0, model)
    assert model.training and model[1].training
    for key, value in model[1].state_dict().items():
        assert torch.equal(value, before[key]), key


def test_real_training_run():
    data = TrainData(DataSpec("synthetic", batch_size=64), seed=0)
    spec = TrainingSpec(steps="60it", eval_every="60it", milestones=())

    def new_model():
        return build_model(ModelSpec("mlp_64_32"), 10, data.info.shape, seed=0)

    schedule = log_schedule(end=40, every_until=10, points=8)
    init = new_model()
    split = magnitude_prune(capture_state(init), Mask.dense(init), 0.5)
    telemetry = EarlyPhaseTelemetry(init, data, schedule, seed=0, train_eval_examples=1000, split=split)
    model = new_model()
    result = train(model, data, spec, capture=[40], step_hook=telemetry.hook)
    telemetry.finish(result.state)
    table = telemetry.table()

    assert sorted(set(table.iteration)) == schedule
    assert values(table, "distance_to_init")[0] == 0.0
    assert values(table, "sign_flip_fraction", "pruned")[0] == 0.0
    assert values(table, "test_accuracy")[0] == pytest.approx(evaluate(new_model(), data)[1])

    def flat(state):
        return torch.cat([state[n].flatten() for n in model.prunable])

    assert values(table, "cosine_to_final")[40] == pytest.approx(
        float(cosine(flat(result.captured[40]), flat(result.state)))
    )
    # telemetry does not perturb training
    plain = train(new_model(), data, spec)
    assert all(torch.equal(plain.state[k], v) for k, v in result.state.items())
