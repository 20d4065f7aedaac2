import copy
import math

import pytest
import torch

from earlyphase.errors import SpecError
from earlyphase.interventions import INTERVENTIONS, BranchStart, describe, get_intervention
from earlyphase.masks import Mask

PRUNABLE = {"conv.weight": (8, 3, 3, 3), "fc.weight": (10, 16)}
OTHER = {"bn.weight": (8,), "bn.running_mean": (8,), "fc.bias": (10,)}
PERMUTATIONS = [f"permute_{g}{s}" for g in ("network", "layer", "filter") for s in ("", "_magnitudes")]


def _state(shapes, generator):
    return {n: torch.randn(shape, generator=generator) for n, shape in shapes.items()}


def _start(seed=7, big=False):
    """A hand-built BranchStart; ``big`` adds a 256×512 prunable layer for statistics."""
    g = torch.Generator().manual_seed(0)
    prunable = {**PRUNABLE, "big.weight": (256, 512)} if big else PRUNABLE
    shapes = {**prunable, **OTHER}
    state_k, state_0, fresh = _state(shapes, g), _state(shapes, g), _state(shapes, g)
    mask = Mask({n: torch.rand(shape, generator=g) < 0.5 for n, shape in prunable.items()})
    return BranchStart(state_k, state_0, mask, lambda: dict(fresh), seed)


def _sign(w):
    return torch.where(w >= 0, 1.0, -1.0)


def _apply(name, start):
    return get_intervention(name)(start)


def _groups(name, tensor_by_layer, keep_by_layer):
    """The kept values of each group (network, layer or filter), in position order."""
    if "network" in name:
        return [torch.cat([tensor_by_layer[n][keep_by_layer[n]] for n in keep_by_layer])]
    if "layer" in name:
        return [tensor_by_layer[n][keep_by_layer[n]] for n in keep_by_layer]
    return [t[k] for n in keep_by_layer for t, k in zip(tensor_by_layer[n], keep_by_layer[n])]


def _assert_rest_at_k(state, start):
    assert state.keys() == start.state_k.keys()
    for name in OTHER:
        assert torch.equal(state[name], start.state_k[name])


def _assert_pruned_zero(state, mask):
    for name, keep in mask.items():
        assert torch.equal(state[name][~keep], torch.zeros(int((~keep).sum())))


@pytest.mark.parametrize("signs", ["0", "k"])
@pytest.mark.parametrize("magnitudes", ["0", "k"])
def test_signs_and_magnitudes_come_from_the_named_iterations(signs, magnitudes):
    start = _start()
    state, mask = _apply(f"signs_{signs}_magnitudes_{magnitudes}", start)
    sign_source = start.state_0 if signs == "0" else start.state_k
    magnitude_source = start.state_0 if magnitudes == "0" else start.state_k
    assert mask is start.mask
    for name, keep in mask.items():
        assert torch.equal(_sign(state[name])[keep], _sign(sign_source[name])[keep])
        assert torch.equal(state[name].abs()[keep], magnitude_source[name].abs()[keep])
    _assert_pruned_zero(state, mask)
    _assert_rest_at_k(state, start)


def test_signs_k_magnitudes_k_is_the_rewound_subnetwork():
    start = _start()
    state, mask = _apply("signs_k_magnitudes_k", start)
    assert all(torch.equal(state[n], start.state_k[n] * mask[n]) for n in mask)


def test_random_magnitudes_keep_signs_and_follow_the_kaiming_half_normal():
    start = _start(big=True)
    state, mask = _apply("random_magnitudes", start)
    for name, keep in mask.items():
        assert torch.equal(_sign(state[name])[keep], _sign(start.state_k[name])[keep])
        assert not torch.isclose(state[name].abs()[keep], start.state_k[name].abs()[keep]).any()
    kept = state["big.weight"][mask["big.weight"]].abs()
    expected_mean = math.sqrt(2 / 512) * math.sqrt(2 / math.pi)
    assert kept.mean().item() == pytest.approx(expected_mean, rel=0.02)
    _assert_pruned_zero(state, mask)
    _assert_rest_at_k(state, start)


@pytest.mark.parametrize("name", PERMUTATIONS)
def test_permutations_shuffle_only_within_their_groups(name):
    start = _start()
    state, mask = _apply(name, start)
    assert mask is start.mask
    _assert_pruned_zero(state, mask)
    _assert_rest_at_k(state, start)
    for name_, keep in mask.items():  # kept positions stay the same set: no kept weight became 0
        assert (state[name_][keep] != 0).all()
    before, after = _groups(name, start.state_k, mask), _groups(name, state, mask)
    magnitudes_only = name.endswith("_magnitudes")
    for old, new in zip(before, after):
        if magnitudes_only:
            old, new = old.abs(), new.abs()
        assert torch.equal(old.sort().values, new.sort().values)
    assert any(not torch.equal(old, new) for old, new in zip(before, after))
    if magnitudes_only:
        for name_, keep in mask.items():
            assert torch.equal(_sign(state[name_])[keep], _sign(start.state_k[name_])[keep])
    if name == "permute_network":  # values do cross layers
        conv = mask["conv.weight"]
        assert not torch.equal(
            state["conv.weight"][conv].sort().values, start.state_k["conv.weight"][conv].sort().values
        )


@pytest.mark.parametrize("name", [*PERMUTATIONS, "random_magnitudes", "noise_0.5"])
def test_random_interventions_depend_only_on_the_seed(name):
    first, _ = _apply(name, _start(seed=1))
    again, _ = _apply(name, _start(seed=1))
    other, _ = _apply(name, _start(seed=2))
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert not all(torch.equal(first[n], other[n]) for n in PRUNABLE)


@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_noise_std_is_alpha_times_the_layer_init_std(alpha):
    start = _start(big=True)
    state, mask = _apply(f"noise_{alpha:g}", start)
    keep = mask["big.weight"]
    delta = (state["big.weight"] - start.state_k["big.weight"])[keep]
    assert delta.std().item() == pytest.approx(alpha * math.sqrt(2 / 512), rel=0.03)
    assert abs(delta.mean().item()) < 0.05 * alpha * math.sqrt(2 / 512)
    _assert_pruned_zero(state, mask)
    _assert_rest_at_k(state, start)


def test_noise_names_parse_and_bad_names_raise_one_line_errors():
    start = _start()
    state, _ = get_intervention("noise_0.25")(start)
    generator = torch.Generator().manual_seed(start.seed)
    for name, keep in start.mask.items():
        w = start.state_k[name]
        expected = w + torch.randn(w.shape, generator=generator) * 0.25 * math.sqrt(2 / w[0].numel())
        assert torch.allclose(state[name][keep], expected[keep])
    get_intervention("noise_2")
    for bad in ("noise_x", "noise_-1", "noise_0", "noise_inf", "noise_", "bogus"):
        with pytest.raises(SpecError) as error:
            get_intervention(bad)
        assert "\n" not in str(error.value) and "noise_<alpha>" in str(error.value)
    with pytest.raises(SpecError, match="permute_filter_magnitudes"):
        get_intervention("bogus")


def _uneven_start(seed=7):
    """A BranchStart whose mask keeps 10 of conv's 216 weights and 150 of fc's 160."""
    start = _start(seed)
    keep = {"conv.weight": 10, "fc.weight": 150}
    g = torch.Generator().manual_seed(1)
    mask = Mask()
    for name, shape in PRUNABLE.items():
        flat = torch.zeros(math.prod(shape), dtype=torch.bool)
        flat[torch.randperm(flat.numel(), generator=g)[: keep[name]]] = True
        mask[name] = flat.view(shape)
    return BranchStart(start.state_k, start.state_0, mask, start.fresh_state, seed)


def test_random_prune_keeps_each_layers_count_exactly():
    start = _uneven_start()
    state, mask = _apply("random_prune", start)
    assert {n: int(m.sum()) for n, m in mask.items()} == {"conv.weight": 10, "fc.weight": 150}
    assert all(not torch.equal(mask[n], start.mask[n]) for n in mask)  # a new draw in every layer
    assert all(torch.equal(state[n], start.state_k[n]) for n in state)  # the weights at k, unmasked
    again = _apply("random_prune", _uneven_start())[1]
    other = _apply("random_prune", _uneven_start(seed=8))[1]
    assert all(torch.equal(again[n], mask[n]) for n in mask)  # a function of the branch seed
    assert any(not torch.equal(other[n], mask[n]) for n in mask)
    # over many seeds every position of a layer is drawn: the 10 conv survivors are spread uniformly
    drawn = sum(_apply("random_prune", _uneven_start(seed))[1]["conv.weight"].long() for seed in range(300))
    assert int(drawn.sum()) == 3000 and int(drawn.min()) > 0 and int(drawn.max()) < 40  # mean 13.9


def test_random_prune_global_keeps_only_the_total_count():
    start = _uneven_start()
    state, mask = _apply("random_prune_global", start)
    assert mask.kept == start.mask.kept == 160
    # uniform over all 376 weights: conv gets about 160 × 216 / 376 ≈ 92 survivors, not 10
    assert 60 < int(mask["conv.weight"].sum()) < 120
    assert all(torch.equal(state[n], start.state_k[n]) for n in state)


@pytest.mark.parametrize("name", [*INTERVENTIONS, "noise_1"])
def test_every_intervention_keeps_keys_and_shapes_and_leaves_its_inputs_alone(name):
    start = _start()
    inputs = copy.deepcopy((start.state_k, start.state_0, start.mask))
    state, mask = _apply(name, start)
    assert {n: v.shape for n, v in state.items()} == {n: v.shape for n, v in start.state_k.items()}
    assert mask.keys() == start.mask.keys()
    for old, new in zip(inputs, (start.state_k, start.state_0, start.mask)):
        assert old.keys() == new.keys() and all(torch.equal(old[n], new[n]) for n in old)


def test_describe_lists_every_name_with_its_one_line_summary():
    lines = describe().splitlines()
    assert [line.split()[0] for line in lines] == [*INTERVENTIONS, "noise_<alpha>"]
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines)
