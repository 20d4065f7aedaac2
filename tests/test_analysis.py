"""Analysis of a hand-written experiment: aggregation, tables, the "matches dense" criterion, the
report's files and its refusal of bad input."""

from __future__ import annotations

import pandas as pd
import pytest

from earlyphase.analysis import figures, tables
from earlyphase.analysis.report import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SEEDS = (1, 2)
SPREAD = {1: -0.005, 2: +0.005}  # seed offsets: every mean ± std is m ± 0.707 percentage points
DENSE = 0.90
# Mean accuracy per level 1..4. Dense is 90 ± 0.71%, so IMP matches at >= 89.29%: k=500 down to
# level 3 (51.2%); k=0 only at level 1 (80%): its level 3 matches again, but after a level below.
MEANS = {
    (500, "none"): [0.905, 0.900, 0.895, 0.870],
    (0, "none"): [0.895, 0.880, 0.894, 0.850],
    (500, "random_prune"): [0.880, 0.850, 0.800, 0.700],
    (500, "random_reinit"): [0.870, 0.840, 0.790, 0.690],
    (500, "permute_layer"): [0.860, 0.820, 0.760, 0.650],
}


def _row(seed, stage, k, intervention, level, accuracy):
    density = 0.8**level
    return {
        "experiment": "hand",
        "trial_id": f"{stage}-{seed}-{k}-{intervention}",
        "stage": stage,
        "seed": seed,
        "model": "resnet20",
        "dataset": "cifar10",
        "rewind_iteration": k,
        "pretraining": "none",
        "intervention": intervention,
        "level": level,
        "density": density,
        "sparsity": 1 - density,
        "test_accuracy": accuracy + SPREAD[seed],
        "test_loss": 0.3,
        "train_loss": 0.1,
        "iterations": 1000,
        "wall_time_s": 1.0,
        "spec_key": "abc",
    }


def _results() -> pd.DataFrame:
    rows = [_row(seed, "dense", None, "none", 0, DENSE) for seed in SEEDS]
    for (k, intervention), means in MEANS.items():
        stage = "imp" if intervention == "none" else "branch"
        rows += [
            _row(seed, stage, k, intervention, level, mean)
            for seed in SEEDS
            for level, mean in enumerate(means, start=1)
        ]
    return pd.DataFrame(rows)


def _telemetry() -> pd.DataFrame:
    rows = []
    for seed in SEEDS:
        for t in (0, 1, 2, 10, 100, 1000):
            values = [
                ("test_accuracy", "all", 0.1 + t / 2000 + SPREAD[seed]),
                ("train_loss", "all", 2.3 - t / 1000),
            ]
            values += [(f"weight_{i}", "all", seed * 0.01 * i + t * 1e-5) for i in range(3)]
            values += [("mean_abs_weight", g, 0.05 + seed * 0.001) for g in ("all", "kept", "pruned")]
            values += [("distance_to_init", g, t * 0.01) for g in ("all", "kept", "pruned")]
            rows += [
                {"experiment": "hand", "trial_id": f"t{seed}", "seed": seed, "model": "resnet20",
                 "dataset": "cifar10", "iteration": t, "metric": m, "group": g, "value": v}
                for m, g, v in values
            ]  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture
def experiment(tmp_path):
    directory = tmp_path / "hand"
    directory.mkdir()
    _results().to_csv(directory / "results.csv", index=False)
    _telemetry().to_csv(directory / "telemetry.csv", index=False)
    return directory


def _line(curves, k, intervention):
    return curves[(curves.rewind_iteration == k) & (curves.intervention == intervention)].set_index("level")


def test_imp_curves_are_seed_means_with_dense_as_level_0(experiment):
    curves = tables.imp_curves(tables.load_results(experiment))
    std = pytest.approx(0.01 / 2**0.5)
    for (k, intervention), means in MEANS.items():
        line = _line(curves, k, intervention)
        levels = [0, 1, 2, 3, 4] if intervention == "none" else [1, 2, 3, 4]
        assert list(line.index) == levels
        expected = [DENSE, *means] if intervention == "none" else means
        assert list(line.accuracy_mean) == pytest.approx(expected)
        assert list(line.accuracy_std) == [std] * len(levels)
        assert list(line.density) == pytest.approx([0.8**level for level in levels])
        assert set(line.n_seeds) == {2}
    assert tables.dense_accuracy(curves) == pytest.approx(DENSE)


def test_markdown_table_has_a_column_per_line_and_percent_cells(experiment):
    table = tables.markdown_table(tables.imp_curves(tables.load_results(experiment)))
    header, rule, *body = table.splitlines()
    assert header == (
        "| level | density % | IMP k=0 | IMP k=500 | random_prune k=500 | random_reinit k=500 "
        "| permute_layer k=500 |"
    )
    assert body[0] == "| 0 | 100.0 | 90.00 ± 0.71 | 90.00 ± 0.71 |  |  |  |"
    assert (
        body[3] == "| 3 | 51.2 | 89.40 ± 0.71 | 89.50 ± 0.71 | 80.00 ± 0.71 | 79.00 ± 0.71 | 76.00 ± 0.71 |"
    )
    assert len(body) == 5


def _matching(experiment, tolerance=None, seeds=SEEDS):
    results = tables.load_results(experiment)
    return tables.matching_table(tables.imp_curves(results[results.seed.isin(seeds)]), tolerance)


def test_matching_is_within_one_dense_std_down_to_the_sparsest_level(experiment):
    matches = _matching(experiment)
    std = 0.01 / 2**0.5  # dense 89.5 and 90.5 over two seeds
    assert matches.rewind_iteration.tolist() == [0, 500]
    assert matches.level.tolist() == [1, 3]  # k=0's level 3 matches again, after level 2 fell below
    assert matches.density.tolist() == pytest.approx([0.8, 0.512])
    assert matches.sparsity.tolist() == pytest.approx([0.2, 0.488])
    assert matches.accuracy_mean.tolist() == pytest.approx([0.895, 0.895])
    assert matches.tolerance.tolist() == pytest.approx([std, std])
    assert matches.threshold.tolist() == pytest.approx([0.9 - std, 0.9 - std])
    assert tables.matching_tolerance(tables.imp_curves(tables.load_results(experiment))) == pytest.approx(std)


@pytest.mark.parametrize(
    "tolerance, levels",
    [(0.002, [0, 2]), (0.025, [3, 3]), (0.035, [3, 4])],  # thresholds 89.8%, 87.5%, 86.5%
)
def test_matching_depends_on_the_tolerance(experiment, tolerance, levels):
    assert _matching(experiment, tolerance).level.tolist() == levels


def test_matching_with_one_seed_uses_the_fixed_tolerance(experiment):
    # seed 1 alone: dense 89.5%, k=500 at 90.0, 89.5, 89.0, 86.5 and k=0 at 89.0, 87.5 (threshold 88.5%)
    matches = _matching(experiment, seeds=(1,))
    assert matches.tolerance.tolist() == [tables.SINGLE_SEED_TOLERANCE] * 2 == [0.01, 0.01]
    assert matches.threshold.tolist() == pytest.approx([0.885, 0.885])
    assert matches.level.tolist() == [1, 3]
    assert matches.accuracy_std.tolist() == [0.0, 0.0]


def test_matching_marks_on_figure_1(experiment):
    from matplotlib.figure import Figure

    matches = _matching(experiment, tolerance=0.002)  # k=0: no sparse level matches; k=500: level 2
    ax = Figure().add_subplot()
    figures.mark_matching(ax, matches, {0: "red", 500: "blue"})
    threshold, star, legend = ax.get_lines()
    assert list(threshold.get_ydata()) == pytest.approx([89.8, 89.8])
    assert "0.20 points" in threshold.get_label()
    assert list(star.get_xdata()) == pytest.approx([64.0]) and list(star.get_ydata()) == pytest.approx([90.0])
    assert star.get_marker() == "*" and star.get_color() == "blue"
    assert list(legend.get_xdata()) == [] and legend.get_label() == "sparsest level still matching dense"


def test_telemetry_curves_average_seeds_but_not_tracked_weights(experiment):
    curves = tables.telemetry_curves(tables.load_telemetry(experiment)).set_index(
        ["metric", "group", "iteration"]
    )
    accuracy = curves.loc[("test_accuracy", "all", 1000)]
    assert accuracy["mean"] == pytest.approx(0.6)
    assert accuracy["std"] == pytest.approx(0.01 / 2**0.5)
    assert accuracy["n_seeds"] == 2
    weight = curves.loc[("weight_2", "all", 100)]
    assert (weight["mean"], weight["std"], weight["n_seeds"]) == (pytest.approx(0.02 + 1e-3), 0.0, 1)
    assert set(curves.loc["mean_abs_weight"].index.get_level_values("group")) == {"all", "kept", "pruned"}


def test_missing_telemetry_is_none(tmp_path):
    assert tables.load_telemetry(tmp_path) is None


def test_load_results_names_missing_columns(tmp_path):
    _results().drop(columns=["density"]).to_csv(tmp_path / "results.csv", index=False)
    with pytest.raises(ValueError, match=r"lacks the columns \['density'\]"):
        tables.load_results(tmp_path)


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 10_000


def test_report_writes_figures_tables_and_summary(experiment, capsys):
    assert main([str(experiment)]) == 0
    out = experiment / "report"
    pngs = ["accuracy_vs_density.png", "interventions_vs_density.png", "telemetry.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*pngs, "report.md"])
    assert all(_is_png(out / name) for name in pngs)
    report = (out / "report.md").read_text()
    assert "at least 89.29% (dense 90.00% over 2 seed(s) − tolerance 0.71 points, one standard" in report
    assert "| 0 | 1 | 80.0 | 20.0 | 89.50 ± 0.71 |\n| 500 | 3 | 51.2 | 48.8 | 89.50 ± 0.71 |" in report
    assert "- 2 seed(s), 12 trials, 42 rows" in report
    assert "| 4 | 41.0 | 87.00 ± 0.71 | 65.00 ± 0.71 |" in report  # IMP k=500 beside permute_layer
    assert all(f"]({name})" in report for name in pngs)
    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"wrote {out / name}" for name in [*pngs, "report.md"]]


def test_report_tolerance_is_in_percentage_points(experiment, tmp_path):
    assert main([str(experiment), "--out", str(tmp_path), "--tolerance", "0.2"]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "tolerance 0.20 points, as given" in report
    assert "| 0 | 0 | 100.0 | 0.0 | none: level 1 is already below |" in report
    assert "| 500 | 2 | 64.0 | 36.0 | 90.00 ± 0.71 |" in report


def test_report_without_branches_or_telemetry_draws_only_figure_1(experiment, tmp_path):
    results = tables.load_results(experiment)
    (experiment / "telemetry.csv").unlink()
    results[results.intervention == "none"].to_csv(experiment / "results.csv", index=False)
    assert main([str(experiment), "--out", str(tmp_path / "elsewhere")]) == 0
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == [
        "accuracy_vs_density.png",
        "report.md",
    ]


@pytest.mark.parametrize("make_dir", [False, True])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, make_dir):
    target = tmp_path / "missing"
    if make_dir:
        target.mkdir()
    assert main([str(target)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("report: ")
    assert ("no results.csv" in error) if make_dir else ("no experiment directory" in error)
    assert sorted(p.name for p in tmp_path.rglob("*")) == (["missing"] if make_dir else [])


@pytest.mark.parametrize("tolerance", ["-1", "nan", "lots"])
def test_bad_tolerance_is_refused(experiment, capsys, tolerance):
    with pytest.raises(SystemExit) as exit_:
        main([str(experiment), "--tolerance", tolerance])
    assert exit_.value.code == 2 and "--tolerance" in capsys.readouterr().err
    assert not (experiment / "report").exists()
