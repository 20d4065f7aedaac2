"""Data diet and instability sweeps (docs/experiments.md B): scored subsets as pretraining, their
names and keys, the refusals before launch, the tables' analysis, and both smoke sweeps through Ray."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from raytools import progress, sweep_module, trial_dirs

from earlyphase.analysis.datadiet import (
    averaged_scores,
    connectivity_vs_accuracy,
    pair_barriers,
    score_agreement,
    subset_name_parts,
)
from earlyphase.analysis.report import write_report
from earlyphase.connectivity import copy_data_seeds, error_barrier, train_copies
from earlyphase.data import TrainData, load_split
from earlyphase.errors import SpecError
from earlyphase.imp import IMP
from earlyphase.pretraining import pretraining_data
from earlyphase.results import EXAMPLE_BARRIER_COLUMNS, SCORE_COLUMNS, STABILITY_COLUMNS
from earlyphase.runs import get_run
from earlyphase.scores import subset_indices
from earlyphase.specs import PretrainingSpec
from earlyphase.sweep import SweepSpec
from earlyphase.tune.cli import main as sweep_main

SMOKE_RUN = get_run("smoke_synthetic")  # 4096 training examples, 10 classes, 128 iterations


def _presets(name: str) -> dict:
    return sweep_module(name).PRESETS


# --- subsets as pretraining -----------------------------------------------------------------------


def test_subset_names_read_back_and_random_subsets_keep_their_keys():
    for name in (
        "subset_random_640",
        "subset_easy_el2n_640",
        "subset_hard_forgetting_1000_o500",
        "subset_lmc_20",
    ):
        assert PretrainingSpec.from_name(name, "16it").name == name
    assert PretrainingSpec.from_name("subset_640", "16it").name == "subset_random_640"
    random = PretrainingSpec("subset", "16it", subset_size=640)
    assert random.to_dict() == {
        "mode": "subset",
        "iterations": "16it",
        "reset_optimizer": False,
        "subset_size": 640,
    }
    easy = PretrainingSpec.from_name("subset_easy_el2n_640", "16it")
    assert (easy.subset_kind, easy.subset_score, easy.subset_size, easy.subset_offset) == (
        "easy",
        "el2n",
        640,
        0,
    )
    assert len({easy.key(), random.key(), easy.replace(subset_kind="hard").key()}) == 3
    assert "subset_score" not in PretrainingSpec.from_name("subset_lmc_640", "16it").to_dict()
    assert subset_name_parts("subset_hard_el2n_1000_o500") == ("hard_el2n_o500", 1000)
    with pytest.raises(SpecError, match="unknown score 'loss'"):
        PretrainingSpec.from_name("subset_easy_loss_640", "16it")
    with pytest.raises(SpecError, match="needs a scored subset"):
        PretrainingSpec.from_name("subset_random_640_o10", "16it")


def test_scored_subsets_are_the_class_balanced_ends_of_the_averaged_scores():
    labels = torch.arange(40) % 2
    score = torch.arange(40.0).flip(0)  # example i scores 39 - i: the last examples are the easiest
    scores = {"el2n": score, "barrier": score}
    easy = subset_indices(PretrainingSpec.from_name("subset_easy_el2n_4", "1it"), scores, labels, 2)
    assert easy.tolist() == [36, 37, 38, 39]
    hard = subset_indices(PretrainingSpec.from_name("subset_hard_el2n_4_o2", "1it"), scores, labels, 2)
    assert hard.tolist() == [2, 3, 4, 5]  # one of each class skipped from the hard end
    lmc = subset_indices(PretrainingSpec.from_name("subset_lmc_2", "1it"), scores, labels, 2)
    assert lmc.tolist() == [38, 39]
    with pytest.raises(SpecError, match="needs the forgetting scores"):
        subset_indices(PretrainingSpec.from_name("subset_easy_forgetting_4", "1it"), scores, labels, 2)


def test_pretraining_data_of_a_scored_subset_holds_exactly_its_examples():
    data = TrainData(SMOKE_RUN.data, seed=0, device="cpu")
    spec = PretrainingSpec.from_name("subset_easy_el2n_20", "1it")
    index = torch.arange(0, 4096, 205)[:20]
    view = pretraining_data(data, spec, seed=0, subset=index)
    assert torch.equal(view.train_x, data.train_x[index]) and torch.equal(view.train_y, data.train_y[index])
    with pytest.raises(SpecError, match="exactly with scored subsets"):
        pretraining_data(data, spec, seed=0)
    with pytest.raises(SpecError, match="exactly with scored subsets"):
        pretraining_data(data, PretrainingSpec("subset", "1it", subset_size=20), seed=0, subset=index)


def test_plain_sweeps_refuse_scored_subsets():
    with pytest.raises(SpecError, match="sweeps/data_diet.py"):
        SweepSpec(
            run=SMOKE_RUN, pretraining_modes=("none", "subset_easy_el2n_640"), pretraining_lengths=("16it",)
        )


# --- the tables' analysis --------------------------------------------------------------------------


def test_scores_average_and_agree_by_rank():
    values = {0: [1.0, 2.0, 3.0, 4.0], 1: [2.0, 4.0, 6.0, 8.0], 2: [4.0, 3.0, 2.0, 1.0]}
    rows = [
        {"example_index": i, "label": 0, "score": "el2n", "network": n, "value": v[i]}
        for n, v in values.items()
        for i in range(4)
    ]
    rows += [
        {"example_index": i, "label": 0, "score": "forgetting", "network": 0, "value": 3 - i}
        for i in range(4)
    ]
    table = pd.DataFrame(rows)
    assert averaged_scores(table)["el2n"].tolist() == pytest.approx([7 / 3, 3, 11 / 3, 13 / 3])
    agreement = score_agreement(table).set_index("score")
    assert agreement.spearman["el2n"] == pytest.approx((1 - 1 - 1) / 3)  # pairs: +1, -1, -1
    assert agreement.networks["el2n"] == 3 and pd.isna(agreement.spearman["forgetting"])
    assert agreement.spearman["el2n vs forgetting"] == pytest.approx(-1.0)


def test_pair_barriers_are_the_path_maximum_above_the_mean_of_its_ends():
    path = pd.DataFrame(
        {"alpha": [1.0, 0.0, 0.5], "test_error": [0.2, 0.1, 0.5], "train_error": [0.0, 0.0, 0.0]}
    ).assign(seed=0, pretraining="none", pretraining_iterations=0, level=0, rewind_iteration=16, density=1.0)
    pair = pair_barriers(path).iloc[0]
    assert pair.test_barrier == pytest.approx(0.5 - 0.15) and pair.train_barrier == 0


# --- refusals before launch ----------------------------------------------------------------------

BAD_INPUT = [
    ("data_diet", ["--scores", "el2n,loss"], "unknown score(s) 'loss'"),
    ("data_diet", ["--score-networks", "0"], "score_networks must be >= 1"),
    ("data_diet", ["--modes", "none,subset_easy_el2n_5000"], "larger than"),
    ("data_diet", ["--modes", "none,subset_hard_el2n_640_o4000"], "larger than"),
    ("data_diet", ["--modes", "none,subset_easy_grand_640", "--scores", "el2n"], "need it among --scores"),
    ("data_diet", ["--barrier-networks", "3"], "barrier_networks must lie in 1..2"),
    ("stability", ["--alpha-points", "1"], "α grid needs at least 2 points"),
    ("stability", ["--stability-levels", "0,2"], "outside 0..1"),
    ("stability", ["--interpolation-bn", "freeze"], "unknown BatchNorm handling"),
    ("stability", ["--modes", "none,subset_easy_el2n_640"], "sweeps/data_diet.py"),
]


@pytest.mark.parametrize("family, extra, message", BAD_INPUT)
def test_bad_input_is_one_line_exit_2_and_nothing_written(family, extra, message, tmp_path, capsys):
    argv = ["--preset", "smoke", "--storage-path", str(tmp_path), *extra]
    assert (
        sweep_main(family, _presets(family), "smoke", argv, spec_class=type(_presets(family)["smoke"])) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


# --- the smoke sweeps through Ray ----------------------------------------------------------------


def test_data_diet_smoke_scores_subsets_and_pretrains_on_them(local_ray, tmp_path):
    argv = ["--preset", "smoke", "--storage-path", str(tmp_path), "--name", "diet", "--levels", "1"]
    argv += ["--modes", "none,subset_easy_el2n_640,subset_lmc_640", "--rewind-iterations", "0,16"]
    argv += ["--scores", "el2n,forgetting"]
    presets = _presets("data_diet")
    runner = "earlyphase.tune.datadiet:run_data_diet"
    assert sweep_main("data_diet", presets, "smoke", argv, type(presets["smoke"]), runner) == 0
    experiment = tmp_path / "diet"
    scores = pd.read_csv(experiment / "scores.csv")
    assert tuple(scores.columns) == SCORE_COLUMNS
    assert scores.groupby("score").network.unique().map(sorted).to_dict() == {
        "el2n": [0, 1], "forgetting": [0, 1], "barrier": [0],
    }  # fmt: skip
    assert (scores.groupby(["score", "network"]).size() == 4096).all()
    labels = load_split("synthetic", True)[1]
    assert (scores.label.to_numpy().reshape(-1, 4096) == labels.numpy()).all()
    el2n = scores[scores.score == "el2n"].value
    assert el2n.between(0, 2**0.5).all() and el2n.std() > 0
    forgetting = scores[scores.score == "forgetting"].value
    assert (forgetting == forgetting.round()).all() and forgetting.between(0, 4).all()  # 4 records
    assert all(len(progress(d)) == 1 for d in trial_dirs(experiment, "scores"))
    results = pd.read_csv(experiment / "results.csv")
    chains = results[results.stage == "imp"].groupby(["pretraining", "rewind_iteration"])["level"].apply(list)
    assert chains.to_dict() == {
        ("none", 0): [1], ("none", 16): [1], ("subset_easy_el2n_640", 16): [1], ("subset_lmc_640", 16): [1],
    }  # fmt: skip
    # the easy subset the trial pretrained on is the one the averaged scores.csv names: rerun its dense run
    averaged = {name: torch.tensor(v) for name, v in averaged_scores(scores).items()}
    spec = PretrainingSpec.from_name("subset_easy_el2n_640", "16it")
    index = subset_indices(spec, averaged, labels, 10)
    chosen = torch.zeros(4096, dtype=torch.bool)
    chosen[index] = True
    for c in range(10):  # 64 of each class, none harder than any of its class left out
        in_class = labels == c
        assert chosen[in_class].sum() == 64
        assert averaged["el2n"][chosen & in_class].max() <= averaged["el2n"][~chosen & in_class].min()
    torch.set_num_threads(1)
    dense = IMP(SMOKE_RUN.replace(pretraining=spec), 0, "cpu").dense([], pretraining_subset=index)
    row = results[(results.stage == "dense") & (results.pretraining == spec.name)]
    assert row.test_accuracy.item() == pytest.approx(dense.metrics["test_accuracy"], abs=1 / 1024)


def test_stability_smoke_paths_and_example_barriers(local_ray, tmp_path):
    argv = ["--preset", "smoke", "--storage-path", str(tmp_path), "--name", "stab", "--modes", "none"]
    argv += ["--stability-levels", "0", "--levels", "0", "--alpha-points", "3"]
    presets = _presets("stability")
    runner = "earlyphase.tune.stability:run_stability"
    assert sweep_main("stability", presets, "smoke", argv, type(presets["smoke"]), runner) == 0
    experiment = tmp_path / "stab"
    stability = pd.read_csv(experiment / "stability.csv")
    assert tuple(stability.columns) == STABILITY_COLUMNS
    assert stability.groupby("rewind_iteration").alpha.apply(list).to_dict() == {
        0: [0, 0.5, 1],
        16: [0, 0.5, 1],
    }
    barriers = pd.read_csv(experiment / "example_barriers.csv")
    assert tuple(barriers.columns) == EXAMPLE_BARRIER_COLUMNS
    assert barriers.groupby("rewind_iteration").size().to_dict() == {0: 4096, 16: 4096}
    # the copies from k = 16 recomputed here: same endpoints and midpoint (one test example is 1/1024)
    torch.set_num_threads(1)
    imp = IMP(SMOKE_RUN, 0, "cpu")
    start = imp.dense([16]).rewind_states[16]
    copies = train_copies(SMOKE_RUN, start, 16, 0, copy_data_seeds(0), device="cpu")
    path = error_barrier(imp.new_model(), *copies, imp.data, points=3, train_examples=10_000)
    ours = stability[stability.rewind_iteration == 16].sort_values("alpha")
    assert ours.test_error.tolist() == pytest.approx(list(path.test_error), abs=1 / 1024)
    assert (
        ours.test_error.iloc[0] != ours.test_error.iloc[-1]
        or ours.test_loss.iloc[0] != ours.test_loss.iloc[-1]
    )
    results = pd.read_csv(experiment / "results.csv")
    assert results.stage.unique().tolist() == ["dense"]


def test_report_draws_the_data_diet_and_instability_figures(tmp_path):
    pair = {
        "experiment": "hand",
        "pretraining": "none",
        "pretraining_iterations": 0,
        "level": 0,
        "density": 1.0,
    }
    stability = pd.DataFrame(
        [
            {
                **pair,
                "seed": 0,
                "rewind_iteration": k,
                "alpha": a,
                "test_error": e,
                "train_error": e,
                "test_loss": e,
                "train_loss": e,
            }  # fmt: skip
            for k, errors in ((0, (0.1, 0.4, 0.1)), (100, (0.1, 0.12, 0.1)))
            for a, e in zip((0.0, 0.5, 1.0), errors)
        ]
    )
    barriers = pd.DataFrame(
        [
            {**pair, "seed": 0, "rewind_iteration": k, "example_index": i, "label": i % 2, "barrier": b}
            for k, values in ((0, (0.5, 0.2, -0.1, 0.3)), (100, (0.0, -0.2, 0.1, 0.0)))
            for i, b in enumerate(values)
        ]
    )
    scores = pd.DataFrame(
        [
            {
                "experiment": "hand",
                "example_index": i,
                "label": i % 2,
                "score": "el2n",
                "network": n,
                "value": v,
            }
            for n in (0, 1)
            for i, v in enumerate((0.1, 0.5, 0.9, 1.2))
        ]
    )
    results = pd.DataFrame(
        [
            {
                "trial_id": f"t{k}",
                "stage": "imp",
                "seed": 0,
                "rewind_iteration": k,
                "pretraining": "none",
                "pretraining_iterations": 0,
                "intervention": "none",
                "level": 2,
                "density": 0.64,
                "test_accuracy": acc,
            }  # fmt: skip
            for k, acc in ((0, 0.8), (100, 0.9))
        ]
    )
    for name, table in (("stability", stability), ("example_barriers", barriers), ("scores", scores)):
        table.to_csv(tmp_path / f"{name}.csv", index=False)
    written = write_report(results, None, tmp_path / "report", "hand", experiment_dir=tmp_path)
    names = [p.name for p in written]
    assert names[-4:] == ["instability.png", "example_barriers.png", "connected_vs_accuracy.png", "report.md"]
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| none | 0 | 0 | 0 | 0.3 | 0 | 0.3 | 1 |" in report  # barrier 0.4 − 0.1 at k = 0
    assert "| el2n | 2 | 1 |" in report  # two identical networks agree perfectly
    scatter = connectivity_vs_accuracy(results, barriers)
    assert scatter.set_index("rewind_iteration").fraction_connected.to_dict() == {0: 0.25, 100: 0.75}
