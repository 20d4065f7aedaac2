"""Loading and aggregating the tidy tables: results.csv and telemetry.csv."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

REQUIRED = {"stage", "seed", "rewind_iteration", "intervention", "level", "density", "test_accuracy"}
LINE_KEYS = ["rewind_iteration", "intervention"]


def load_results(experiment_dir: str | Path) -> pd.DataFrame:
    path = Path(experiment_dir) / "results.csv"
    if not path.exists():
        raise FileNotFoundError(f"no results.csv in {experiment_dir}")
    table = pd.read_csv(path)
    missing = REQUIRED - set(table.columns)
    if missing:
        raise ValueError(f"{path} lacks the columns {sorted(missing)}")
    return table


def imp_curves(results: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy mean ± std over seeds per (rewind k, intervention, level), with the mean
    density; the dense run is level 0 of every rewind iteration's IMP line."""
    lines = results[results.stage != "dense"]
    dense = results[results.stage == "dense"]
    imp_ks = lines.loc[lines.intervention == "none", "rewind_iteration"].dropna().unique()
    level0 = [dense.assign(rewind_iteration=k, intervention="none") for k in imp_ks]
    rows = pd.concat([*level0, lines], ignore_index=True)
    rows["rewind_iteration"] = rows["rewind_iteration"].astype("Int64")
    curves = rows.groupby([*LINE_KEYS, "level"], as_index=False).agg(
        density=("density", "mean"),
        accuracy_mean=("test_accuracy", "mean"),
        accuracy_std=("test_accuracy", "std"),
        seeds=("seed", "nunique"),
    )
    curves["accuracy_std"] = curves["accuracy_std"].fillna(0.0)
    return curves.sort_values([*LINE_KEYS, "level"], ignore_index=True)


def line_label(rewind_iteration, intervention: str) -> str:
    return f"k={rewind_iteration}" if intervention == "none" else f"k={rewind_iteration} {intervention}"


def markdown_table(curves: pd.DataFrame) -> str:
    """Rows: level and density; columns: one per line (IMP at each k, then each branch);
    cells: test accuracy in percent, mean ± std over seeds."""
    curves = curves.assign(
        line=[line_label(k, i) for k, i in zip(curves.rewind_iteration, curves.intervention)],
        cell=[f"{100 * m:.2f} ± {100 * s:.2f}" for m, s in zip(curves.accuracy_mean, curves.accuracy_std)],
    )
    order = list(dict.fromkeys(curves.sort_values(["intervention", "rewind_iteration"], key=_imp_first).line))
    density = curves.groupby("level").density.mean()
    pivot = curves.pivot(index="level", columns="line", values="cell")[order].fillna("")
    header = "| level | density % | " + " | ".join(order) + " |"
    rule = "|---:|---:|" + "---:|" * len(order)
    body = [
        f"| {level} | {100 * density[level]:.1f} | " + " | ".join(pivot.loc[level]) + " |"
        for level in pivot.index
    ]
    return "\n".join([header, rule, *body])


def _imp_first(column: pd.Series) -> pd.Series:
    return column.map(lambda v: "" if v == "none" else v) if column.name == "intervention" else column
