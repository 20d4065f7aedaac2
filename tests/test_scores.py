"""Example scores against hand computations; forgetting counts; score networks; score-chosen subsets."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from earlyphase.data import TrainData
from earlyphase.errors import SpecError
from earlyphase.models import build_model
from earlyphase.scores import (
    average_scores,
    el2n,
    forgetting_counts,
    grand,
    lowest_barrier_subset,
    score_network,
    score_seeds,
    scored_subset,
)
from earlyphase.specs import DataSpec, ModelSpec, RunSpec, ScoreSpec, TrainingSpec
from earlyphase.training import train


def _linear_problem():
    g = torch.Generator().manual_seed(0)
    model = nn.Linear(5, 3)
    with torch.no_grad():
        model.weight.copy_(torch.randn(3, 5, generator=g))
        model.bias.copy_(torch.randn(3, generator=g))
    x = torch.randn(7, 5, generator=g)
    y = torch.tensor([0, 1, 2, 2, 1, 0, 1])
    return model, x, y


def test_el2n_and_grand_match_the_closed_form_of_a_linear_model():
    # f(x) = Wx + b: ∇_W CE = (p − e_y) xᵀ and ∇_b CE = p − e_y, so GraNd = EL2N · sqrt(‖x‖² + 1).
    model, x, y = _linear_problem()
    with torch.no_grad():
        p = torch.softmax(x.double() @ model.weight.double().T + model.bias.double(), dim=1)
    error = (p - F.one_hot(y, 3).double()).norm(dim=1)
    expected_grand = error * (x.double().pow(2).sum(1) + 1).sqrt()
    tolerance = {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(el2n(model, x, y, batch_size=3).double(), error, **tolerance)
    torch.testing.assert_close(grand(model, x, y, batch_size=3).double(), expected_grand, **tolerance)


def test_grand_equals_a_per_example_autograd_loop_with_batchnorm_in_eval_mode():
    torch.manual_seed(0)  # test-local: the model's default initialisation
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    g = torch.Generator().manual_seed(1)
    for _ in range(3):  # running statistics far from their initial values
        model(3 * torch.randn(16, 4, generator=g) + 1)
    model[0].bias.requires_grad_(False)  # frozen parameters do not count
    x, y = torch.randn(9, 4, generator=g), torch.randint(3, (9,), generator=g)
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    expected = []
    for i in range(len(y)):
        loss = F.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        grads = torch.autograd.grad(loss, trainable)
        expected.append(torch.cat([gr.flatten() for gr in grads]).norm())
    model.train()
    scores = grand(model, x, y, batch_size=4)
    torch.testing.assert_close(scores, torch.stack(expected), rtol=1e-5, atol=1e-6)
    assert model.training  # the model's mode is restored


def test_forgetting_counts_a_hand_written_history():
    history = torch.tensor(
        [
            # ex0 ex1 ex2 ex3 ex4
            [1, 1, 0, 0, 0],
            [1, 0, 0, 1, 0],
            [1, 1, 0, 1, 0],
            [1, 0, 0, 0, 1],
        ],
        dtype=torch.bool,
    )
    # ex1 forgets twice, ex3 once, ex2 is never learned: T = 4 ranks it above every learned example
    assert forgetting_counts(history).tolist() == [0, 2, 4, 1, 0]
    assert forgetting_counts(history[:1]).tolist() == [0, 0, 1, 1, 1]
    with pytest.raises(SpecError, match="correctness history"):
        forgetting_counts(torch.ones(5, dtype=torch.bool))


SCORES = torch.tensor([5.0, 1.0, 9.0, 3.0, 7.0, 0.0, 8.0, 2.0, 6.0, 4.0])
LABELS = torch.arange(10) % 2  # class 0: scores 5 9 7 8 6; class 1: scores 1 3 0 2 4


def test_scored_subsets_take_the_easy_or_hard_end_at_an_offset():
    assert scored_subset(SCORES, 3).tolist() == [1, 5, 7]  # scores 0, 1, 2
    assert scored_subset(SCORES, 3, "hard").tolist() == [2, 4, 6]  # scores 9, 8, 7
    assert scored_subset(SCORES, 3, "easy", offset=2).tolist() == [3, 7, 9]  # scores 2, 3, 4
    assert scored_subset(SCORES, 2, "hard", offset=1).tolist() == [4, 6]  # scores 8, 7
    assert scored_subset(SCORES, 10).tolist() == list(range(10))
    ties = torch.zeros(10)  # ties break by index: still disjoint ends
    easy, hard = scored_subset(ties, 5), scored_subset(ties, 5, "hard")
    assert easy.tolist() == [0, 1, 2, 3, 4] and hard.tolist() == [5, 6, 7, 8, 9]
    assert torch.equal(lowest_barrier_subset(SCORES, 3), scored_subset(SCORES, 3))


def test_class_balanced_scored_subsets():
    assert scored_subset(SCORES, 4, labels=LABELS).tolist() == [0, 1, 5, 8]
    odd = scored_subset(SCORES, 5, labels=LABELS, num_classes=2)  # the first class gets the extra one
    assert odd.tolist() == [0, 1, 4, 5, 8]
    assert torch.bincount(LABELS[odd]).tolist() == [3, 2]
    assert scored_subset(SCORES, 4, "hard", offset=2, labels=LABELS).tolist() == [3, 4, 6, 7]
    g = torch.Generator().manual_seed(0)
    scores, labels = torch.rand(1000, generator=g), torch.randint(10, (1000,), generator=g)
    easy = scored_subset(scores, 200, "easy", labels=labels)
    hard = scored_subset(scores, 200, "hard", labels=labels)
    assert len(easy) == len(hard) == 200 and len(set(easy.tolist()) | set(hard.tolist())) == 400
    assert torch.bincount(labels[easy], minlength=10).tolist() == [20] * 10
    assert torch.equal(easy, scored_subset(scores, 200, "easy", labels=labels))
    assert scores[easy].max() < scores[hard].min()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "cannot take 0"),
        ({"n": 11}, "cannot take 11"),
        ({"n": 5, "offset": 6}, "at offset 6"),
        ({"n": 3, "end": "middle"}, "unknown subset end"),
        ({"n": 2, "offset": 1, "labels": LABELS}, "divisible by 2"),
        ({"n": 6, "labels": torch.tensor([0, 0, 1, 1, 1, 1, 1, 1, 1, 1])}, "class 0 has 2 examples"),
    ],
)
def test_bad_subsets_are_one_line_errors(kwargs, message):
    with pytest.raises(SpecError, match=message) as error:
        scored_subset(SCORES, **kwargs)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"score_networks": 0}, "score_networks must be >= 1"),
        ({"scores": ("el2n", "margin")}, "unknown score"),
        ({"scores": ()}, "scores is empty"),
        ({"scores": ("el2n", "el2n")}, "twice"),
        ({"score_steps": "0it"}, "score_steps must be at least one"),
        ({"forgetting_every": "soon"}, "bad step"),
    ],
)
def test_bad_score_specs_are_one_line_errors(kwargs, message):
    with pytest.raises(SpecError, match=message) as error:
        ScoreSpec(**kwargs)
    assert "\n" not in str(error.value)


def test_score_spec_round_trips_and_documents_its_fields():
    spec = ScoreSpec(score_networks=2, scores=("el2n",))
    assert ScoreSpec.from_json(spec.to_json()) == spec
    assert all(f.metadata["help"] for f in ScoreSpec.__dataclass_fields__.values())
    assert len(set(score_seeds(ScoreSpec(score_networks=16)))) == 16


def test_average_scores_is_the_mean_over_networks():
    averaged = average_scores([{"el2n": torch.tensor([1.0, 2.0])}, {"el2n": torch.tensor([3.0, 6.0])}])
    assert averaged["el2n"].tolist() == [2.0, 4.0]
    with pytest.raises(SpecError, match="different scores"):
        average_scores([{"el2n": torch.zeros(2)}, {"grand": torch.zeros(2)}])
    with pytest.raises(SpecError, match="no score networks"):
        average_scores([])


TINY = RunSpec(
    data=DataSpec("synthetic", batch_size=128),
    model=ModelSpec("mlp_16"),
    training=TrainingSpec(steps="2ep", lr=0.05, milestones=("1ep",), eval_every="1ep"),
)


def test_score_network_scores_the_run_trained_for_score_steps():
    spec = ScoreSpec(score_networks=1, score_steps="40it", forgetting_every="10it")
    scores = score_network(TINY, 7, spec, device="cpu")
    assert list(scores) == ["el2n", "grand", "forgetting"]
    assert all(v.shape == (4096,) and v.device.type == "cpu" for v in scores.values())
    # the same network, trained independently: seed 7's initialisation and data order, 40 iterations
    data = TrainData(TINY.data, 7, "cpu")
    model = build_model(TINY.model, 10, (3, 16, 16), 7)
    train(model, data, TINY.training, end=40)
    x, y = next(data.eval_batches("train", batch_size=4096))
    torch.testing.assert_close(scores["el2n"], el2n(model, x, y), rtol=0, atol=1e-6)
    torch.testing.assert_close(scores["grand"], grand(model, x, y), rtol=1e-5, atol=1e-6)
    # records after 10, 20, 30 and 40 iterations: at most 2 forgetting events, never-learned = 4
    forgetting = scores["forgetting"]
    assert set(forgetting.unique().tolist()) <= {0.0, 1.0, 2.0, 4.0}
    correct_at_end = el2n(model, x, y) < 0.5  # EL2N ≥ 1 − p_y, so p_y > ½: a correct prediction
    assert (forgetting[correct_at_end] < 4).all() and (forgetting == 0).float().mean() > 0.3
    only = score_network(TINY, 7, ScoreSpec(scores=("el2n",), score_steps="40it"), device="cpu")
    assert list(only) == ["el2n"] and torch.equal(only["el2n"], scores["el2n"])
