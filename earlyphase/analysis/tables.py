"""Loading and aggregating the tidy tables: results.csv and telemetry.csv (pandas only)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from earlyphase.interventions import RANDOM_BASELINES

REQUIRED = {
    "trial_id", "stage", "seed", "rewind_iteration", "intervention", "level", "density", "test_accuracy",
}  # fmt: skip
TELEMETRY_REQUIRED = {"seed", "iteration", "metric", "group", "value"}
LINE_KEYS = ["rewind_iteration", "intervention"]
TRACKED_PREFIX = "weight_"


def _read(path: Path, required: set[str]) -> pd.DataFrame:
    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty") from None
    missing = required - set(table.columns)
    if missing:
        raise ValueError(f"{path} lacks the columns {sorted(missing)}")
    if table.empty:
        raise ValueError(f"{path} has no rows")
    return table


def load_results(experiment_dir: str | Path) -> pd.DataFrame:
    """The results table of an experiment directory; one-line errors if it is missing or malformed."""
    path = Path(experiment_dir) / "results.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no results.csv in {experiment_dir}")
    table = _read(path, REQUIRED)
    table["rewind_iteration"] = table["rewind_iteration"].astype("Int64")
    table["intervention"] = table["intervention"].fillna("none")
    before_pretraining = {"pretraining": "none", "pretraining_iterations": 0}  # older tables lack them
    return table.assign(**{name: value for name, value in before_pretraining.items() if name not in table})


def load_telemetry(experiment_dir: str | Path) -> pd.DataFrame | None:
    """The telemetry table of an experiment directory, or None if it has none."""
    path = Path(experiment_dir) / "telemetry.csv"
    return _read(path, TELEMETRY_REQUIRED) if path.is_file() else None


def imp_curves(results: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy mean ± std over seeds per (rewind_iteration, intervention, level), with the
    mean density and n_seeds. The dense rows start every rewind iteration's IMP line (intervention
    "none") at their level: 0, or after sparse pretraining the pretrained level; branch lines start
    at level 1. std is 0 for a single seed."""
    lines = results[results.stage != "dense"]
    dense = results[results.stage == "dense"]
    imp_ks = lines.loc[lines.intervention == "none", "rewind_iteration"].dropna().unique()
    starts = [dense.assign(rewind_iteration=k, intervention="none") for k in imp_ks]
    rows = pd.concat([*starts, lines], ignore_index=True)
    rows["rewind_iteration"] = rows["rewind_iteration"].astype("Int64")
    curves = rows.groupby([*LINE_KEYS, "level"], as_index=False).agg(
        density=("density", "mean"),
        accuracy_mean=("test_accuracy", "mean"),
        accuracy_std=("test_accuracy", "std"),
        n_seeds=("seed", "nunique"),
    )
    curves["accuracy_std"] = curves["accuracy_std"].fillna(0.0)
    return curves.sort_values([*LINE_KEYS, "level"], ignore_index=True)


def dense_accuracy(curves: pd.DataFrame) -> float:
    """Mean dense test accuracy: level 0 of the IMP lines (NaN if there is none)."""
    return float(curves.loc[(curves.intervention == "none") & (curves.level == 0), "accuracy_mean"].mean())


SINGLE_SEED_TOLERANCE = 0.01  # 1 percentage point: "matches dense" when dense has no std (one seed)
MATCHING_COLUMNS = [
    "rewind_iteration", "level", "density", "sparsity", "accuracy_mean", "accuracy_std", "n_seeds",
    "dense_mean", "tolerance", "threshold",
]  # fmt: skip


def matching_tolerance(curves: pd.DataFrame) -> float:
    """The default tolerance of "matches dense" (docs/experiments.md A1): one standard deviation of
    the dense accuracy over seeds, or :data:`SINGLE_SEED_TOLERANCE` when there is one seed (NaN
    without a dense run)."""
    dense = curves[(curves.intervention == "none") & (curves.level == 0)]
    if dense.empty:
        return float("nan")
    return float(dense.accuracy_std.iloc[0]) if dense.n_seeds.iloc[0] > 1 else SINGLE_SEED_TOLERANCE


def matching_table(curves: pd.DataFrame, tolerance: float | None = None) -> pd.DataFrame:
    """Per rewind iteration k, the highest sparsity at which IMP still matches dense (the paper's
    criterion): a level matches when its mean test accuracy over seeds is at least the dense mean
    minus ``tolerance`` (default :func:`matching_tolerance`); the row is the sparsest level with
    every level from dense down to it matching, so a deeper level that matches again after one that
    fell below does not count. Level 0 (density 1) means that already level 1 falls below."""
    tolerance = matching_tolerance(curves) if tolerance is None else tolerance
    imp = curves[curves.intervention == "none"]
    rows = []
    for k, line in imp.groupby("rewind_iteration", sort=True):
        line = line.sort_values("level")
        dense = float(line.accuracy_mean.iloc[0])
        failing = line.level[line.accuracy_mean < dense - tolerance]
        matched = line[line.level < failing.min()] if len(failing) else line
        last = matched.iloc[-1]
        rows.append(
            {
                "rewind_iteration": int(k),
                "level": int(last.level),
                "density": float(last.density),
                "sparsity": 1.0 - float(last.density),
                "accuracy_mean": float(last.accuracy_mean),
                "accuracy_std": float(last.accuracy_std),
                "n_seeds": int(last.n_seeds),
                "dense_mean": dense,
                "tolerance": tolerance,
                "threshold": dense - tolerance,
            }
        )
    return pd.DataFrame(rows, columns=MATCHING_COLUMNS)


def matching_markdown(matches: pd.DataFrame) -> str:
    """The matching table in Markdown, in percent: one row per k with the sparsest matching level."""
    header = "| k | level | density % | sparsity % | test accuracy % |"
    rule = "|---:|---:|---:|---:|---:|"
    body = [
        f"| {row.rewind_iteration} | {row.level} | {100 * row.density:.1f} | {100 * row.sparsity:.1f} | "
        + (
            f"{100 * row.accuracy_mean:.2f} ± {100 * row.accuracy_std:.2f} |"
            if row.level
            else "none: level 1 is already below |"
        )
        for row in matches.itertuples()
    ]
    return "\n".join([header, rule, *body])


def matching_note(curves: pd.DataFrame, matches: pd.DataFrame, given: bool = False) -> str:
    """One sentence stating the matching criterion's numbers and where its tolerance came from."""
    dense = curves[(curves.intervention == "none") & (curves.level == 0)]
    seeds = int(dense.n_seeds.iloc[0])
    first = matches.iloc[0]
    if given:
        source = "as given"
    elif seeds > 1:
        source = "one standard deviation of dense over seeds"
    else:
        source = "a fixed 1 point: one seed has no standard deviation"
    return (
        f"IMP matches dense at a level when its mean test accuracy over seeds is at least "
        f"{100 * first.threshold:.2f}% (dense {100 * first.dense_mean:.2f}% over {seeds} seed(s) − "
        f"tolerance {100 * first.tolerance:.2f} points, {source}). Per rewind iteration k, the "
        "sparsest level with every level from dense down to it matching:"
    )


def line_label(rewind_iteration, intervention: str) -> str:
    """A line's name in tables: ``IMP k=500`` or ``random_prune k=500``."""
    return f"{'IMP' if intervention == 'none' else intervention} k={rewind_iteration}"


def _line_order(curves: pd.DataFrame) -> list[tuple]:
    """IMP lines by k, then baselines, then the other interventions, each by k."""
    rank = {"none": 0, **{b: 1 for b in RANDOM_BASELINES}}
    lines = curves[LINE_KEYS].drop_duplicates().itertuples(index=False, name=None)
    return sorted(lines, key=lambda line: (rank.get(line[1], 2), line[1], line[0]))


def markdown_table(curves: pd.DataFrame) -> str:
    """Rows: level and density; columns: one per line (IMP at each k, baselines, interventions);
    cells: test accuracy in percent, mean ± std over seeds."""
    curves = curves.assign(
        line=[line_label(k, i) for k, i in zip(curves.rewind_iteration, curves.intervention)],
        cell=[f"{100 * m:.2f} ± {100 * s:.2f}" for m, s in zip(curves.accuracy_mean, curves.accuracy_std)],
    )
    order = [line_label(k, i) for k, i in _line_order(curves)]
    density = curves.groupby("level").density.mean()
    pivot = curves.pivot(index="level", columns="line", values="cell")[order].fillna("")
    header = "| level | density % | " + " | ".join(order) + " |"
    rule = "|---:|---:|" + "---:|" * len(order)
    body = [
        f"| {level} | {100 * density[level]:.1f} | " + " | ".join(pivot.loc[level]) + " |"
        for level in pivot.index
    ]
    return "\n".join([header, rule, *body])


def telemetry_curves(telemetry: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds of each (metric, group, iteration), with n_seeds. The tracked weights
    (``weight_i``) are different weights in each seed, so they are not averaged: they come from
    the lowest seed alone (std 0, n_seeds 1)."""
    tracked = telemetry.metric.str.startswith(TRACKED_PREFIX)
    lowest = telemetry.seed == telemetry.seed.min()
    rows = telemetry[~tracked | lowest]
    curves = rows.groupby(["metric", "group", "iteration"], as_index=False).agg(
        mean=("value", "mean"), std=("value", "std"), n_seeds=("seed", "nunique")
    )
    curves["std"] = curves["std"].fillna(0.0)
    return curves.sort_values(["metric", "group", "iteration"], ignore_index=True)


def accuracy_summary(results: pd.DataFrame) -> str:
    """What an IMP sweep prints at its end: test accuracy vs density for every line, and how far
    each rewind iteration matches dense."""
    curves = imp_curves(results)
    heading = f"Test accuracy (%) by density, mean ± std over {results.seed.nunique()} seed(s):"
    text = f"{heading}\n\n{markdown_table(curves)}"
    matches = matching_table(curves)
    if len(matches):
        text += f"\n\n{matching_note(curves, matches)}\n\n{matching_markdown(matches)}"
    return text
