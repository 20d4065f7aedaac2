"""Linear mode connectivity: exact interpolation, barriers of constructed pairs, copies that differ only
by data order."""

import pytest
import torch
from torch import nn

from earlyphase.connectivity import (
    error_barrier,
    example_barriers,
    fraction_connected,
    interpolate_states,
    path_barrier,
    reestimate_batchnorm,
    train_copies,
)
from earlyphase.data import TrainData
from earlyphase.errors import SpecError
from earlyphase.imp import IMP
from earlyphase.masks import magnitude_prune
from earlyphase.models import build_model
from earlyphase.specs import DataSpec, ModelSpec, RunSpec, TrainingSpec
from earlyphase.training import capture_state, train

SPEC = RunSpec(
    data=DataSpec("synthetic", batch_size=128),
    model=ModelSpec("mlp_16"),
    training=TrainingSpec(steps="30it", lr=0.05, milestones=(), eval_every="30it"),
)


@pytest.fixture(scope="module")
def trained():
    """A trained mlp_16 and its hidden-unit permutation: the same function, a bad midpoint."""
    data = TrainData(SPEC.data, 0, "cpu")
    model = build_model(SPEC.model, 10, (3, 16, 16), 0)
    train(model, data, SPEC.training.replace(steps="1ep"))
    state = capture_state(model)
    reverse = torch.arange(15, -1, -1)
    permuted = dict(state)
    permuted["layers.0.weight"] = state["layers.0.weight"][reverse]
    permuted["layers.0.bias"] = state["layers.0.bias"][reverse]
    permuted["fc.weight"] = state["fc.weight"][:, reverse]
    return model, data, state, permuted


def _bn_state(seed):
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    for _ in range(seed + 1):
        model(torch.randn(8, 3, generator=g) * (seed + 2))
    return capture_state(model)


def test_interpolation_of_all_state_is_exact_at_the_ends_and_the_midpoint():
    a, b = _bn_state(1), _bn_state(3)
    assert (a["1.num_batches_tracked"].item(), b["1.num_batches_tracked"].item()) == (2, 4)
    assert not torch.equal(a["1.running_var"], b["1.running_var"])
    for name in a:
        assert torch.equal(interpolate_states(a, b, 0.0)[name], a[name]), name
        assert torch.equal(interpolate_states(a, b, 1.0)[name], b[name]), name
    mid = interpolate_states(a, b, 0.5)
    for name in ("0.weight", "1.running_mean", "1.running_var", "1.weight"):
        assert torch.equal(mid[name], (a[name] + b[name]) / 2), name
    assert mid["1.num_batches_tracked"].item() == 3 and mid["1.num_batches_tracked"].dtype == torch.long
    with pytest.raises(SpecError, match="differ in their entries"):
        interpolate_states(a, {k: v for k, v in b.items() if k != "1.running_var"}, 0.5)


def test_reestimated_batchnorm_statistics_are_the_average_over_training_batches():
    data = TrainData(SPEC.data, 0, "cpu")
    model = nn.Sequential(nn.Flatten(), nn.Linear(768, 4), nn.BatchNorm1d(4, momentum=0.3))
    model.eval()
    reestimate_batchnorm(model, data, batches=3)
    with torch.no_grad():
        pre = [model[1](model[0](data.batch(t)[0])) for t in range(3)]
    bn = model[2]
    torch.testing.assert_close(bn.running_mean, torch.stack([p.mean(0) for p in pre]).mean(0))
    torch.testing.assert_close(bn.running_var, torch.stack([p.var(0) for p in pre]).mean(0))
    assert bn.num_batches_tracked.item() == 3 and bn.momentum == 0.3 and not model.training


def test_identical_endpoints_have_exactly_zero_barrier(trained):
    model, data, state, _ = trained
    for bn in ("interpolate", "reestimate"):
        path = error_barrier(model, state, state, data, points=3, bn=bn, train_examples=500)
        assert path.alpha == (0.0, 0.5, 1.0)
        assert path.test_barrier == 0.0 and path.train_barrier == 0.0 and path.connected
        assert len(set(path.test_error)) == 1 and 0 < path.test_error[0] < 0.5
    assert example_barriers(model, state, state, data).abs().max() == 0


def test_a_network_and_its_hidden_unit_permutation_have_a_bad_midpoint(trained):
    model, data, state, permuted = trained
    path = error_barrier(model, state, permuted, data, points=5, train_examples=1000)
    assert path.test_error[0] == pytest.approx(path.test_error[-1], abs=1e-3)  # the same function
    assert path.test_barrier > 0.1 and path.train_barrier > 0.1 and not path.connected  # 0.20, 0.28
    assert max(path.test_error) == path.test_error[2]  # worst at the midpoint
    assert path.test_barrier == path_barrier(path.test_error)
    rows = path.rows()
    assert [r["alpha"] for r in rows] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert set(rows[0]) == {"alpha", "test_error", "test_loss", "train_error", "train_loss"}
    barriers = example_barriers(model, state, permuted, data)
    assert barriers.shape == (4096,) and barriers.mean() > 0.3  # 0.73
    assert 0 < fraction_connected(barriers) < 0.5


def test_path_barrier_and_fraction_connected_by_hand():
    assert path_barrier([0.1, 0.4, 0.3]) == pytest.approx(0.2)
    assert path_barrier([0.3, 0.2, 0.1]) == pytest.approx(0.1)  # never below max − mean of the ends
    barriers = torch.tensor([-1.0, 0.0, 0.5, 2.0])
    assert fraction_connected(barriers) == 0.5 and fraction_connected(barriers, eps=1.0) == 0.75


def test_bad_barrier_requests_are_one_line_errors(trained):
    model, data, state, _ = trained
    for kwargs, message in [
        ({"points": 1}, "at least 2 points"),
        ({"bn": "average"}, "unknown BatchNorm handling"),
        ({"bn": "reestimate", "bn_batches": 0}, "bn_batches must be >= 1"),
    ]:
        with pytest.raises(SpecError, match=message) as error:
            error_barrier(model, state, state, data, **kwargs)
        assert "\n" not in str(error.value)


def test_copies_from_one_state_differ_only_by_data_order():
    imp = IMP(SPEC, seed=0, device="cpu")
    dense = imp.dense([10])
    start = dense.rewind_states[10]
    same_a, same_b, other = train_copies(SPEC, start, 10, init_seed=0, data_seeds=(5, 5, 6), device="cpu")
    assert all(torch.equal(same_a[n], same_b[n]) for n in start)
    assert not torch.equal(same_a["fc.weight"], other["fc.weight"])
    # a copy is plain training from the start state (fresh optimiser) on TrainData(spec.data, data seed)
    model = build_model(SPEC.model, 10, (3, 16, 16), 1)
    model.load_state_dict(start)
    expected = train(model, TrainData(SPEC.data, 6, "cpu"), SPEC.training, start=10).state
    assert all(torch.equal(other[n], expected[n]) for n in start)
    mask = magnitude_prune(dense.state, dense.mask, 0.5)
    pruned_a, pruned_b = train_copies(SPEC, start, 10, 0, (5, 6), mask=mask, device="cpu")
    for name, keep in mask.items():
        assert (pruned_a[name][~keep] == 0).all() and (pruned_b[name][~keep] == 0).all()
    assert not torch.equal(pruned_a["fc.weight"], pruned_b["fc.weight"])
