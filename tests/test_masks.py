import torch

from earlyphase.masks import Mask, magnitude_prune, random_prune


def _weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "a": torch.randn(50, 20, generator=g),
        "b": torch.randn(30, generator=g),
        "c": torch.randn(7, 3, generator=g),
    }


def _full(weights):
    return Mask({n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()})


def test_magnitude_prune_removes_exactly_the_smallest_globally():
    w = _weights()
    mask = magnitude_prune(w, _full(w), 0.2)
    total = 1000 + 30 + 21
    assert mask.kept == total - round(0.2 * total)
    kept = torch.cat([w[n].abs().flatten()[mask[n].flatten()] for n in w])
    pruned = torch.cat([w[n].abs().flatten()[~mask[n].flatten()] for n in w])
    assert pruned.max() <= kept.min()


def test_density_after_levels_is_point_eight_to_the_l_and_pruned_weights_never_revive():
    w = _weights()
    mask = _full(w)
    for level in range(1, 11):
        previous = mask
        # the next level's magnitudes: pruned weights are zero, survivors get new values
        trained = {n: torch.randn_like(v) * previous[n] for n, v in w.items()}
        mask = magnitude_prune(trained, previous, 0.2)
        assert abs(mask.kept - 0.8**level * mask.total) <= level  # rounding: one weight per level
        assert not (mask["a"] & ~previous["a"]).any()
    assert abs(mask.density - 0.8**10) < 10 / mask.total


def test_random_prune_keeps_the_count_globally_and_per_layer():
    w = _weights()
    mask = magnitude_prune(w, _full(w), 0.5)
    glob = random_prune(mask, seed=3)
    assert glob.kept == mask.kept and set(glob) == set(mask)
    assert any(not torch.equal(glob[n], mask[n]) for n in mask)
    layer = random_prune(mask, seed=3, layerwise=True)
    assert {n: int(m.sum()) for n, m in layer.items()} == {n: int(m.sum()) for n, m in mask.items()}
    assert torch.equal(random_prune(mask, seed=3)["a"], glob["a"])


def test_apply_zeroes_pruned_weights():
    model = torch.nn.Linear(4, 3)
    model.prunable = ("weight",)
    mask = Mask.dense(model)
    mask["weight"][0] = False
    mask.apply_(model)
    assert (model.weight[0] == 0).all() and (model.weight[1:] != 0).all()
    assert mask.density == 8 / 12
