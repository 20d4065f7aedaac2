"""The paper's figures as PNGs, drawn with matplotlib's object API (Agg canvas, no pyplot state).

Each function takes a table from :mod:`earlyphase.analysis.tables` and a path, and returns the
path it saved.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from earlyphase.analysis.tables import TRACKED_PREFIX, dense_accuracy
from earlyphase.interventions import RANDOM_BASELINES

BASELINE_STYLE = {"random_prune": "--", "random_prune_global": (0, (5, 2, 1, 2)), "random_reinit": "-."}
BASELINE_NAME = {
    "random_prune": "random pruning",
    "random_prune_global": "random pruning (global)",
    "random_reinit": "random reinit",
}
GROUP_STYLE = {"all": "-", "kept": "--", "pruned": ":"}
MAX_TICKS = 10
# Figure 3's panels: title and the metrics drawn in each (those absent from the table are skipped).
TELEMETRY_PANELS = [
    ("accuracy", ["train_accuracy", "test_accuracy"]),
    ("loss", ["train_loss", "test_loss"]),
    ("mean |w|", ["mean_abs_weight"]),
    ("fraction of signs flipped vs w₀", ["sign_flip_fraction"]),
    ("gradient norm", ["grad_norm"]),
    ("L2 distance", ["distance_to_init", "distance_to_final"]),
    ("cosine similarity", ["cosine_to_init", "cosine_to_final"]),
    ("tracked weights", [TRACKED_PREFIX]),
]


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=150, bbox_inches="tight")
    return path


def _tick_label(percent: float) -> str:
    return f"{percent:.0f}" if percent >= 99.95 else f"{percent:.1f}" if percent >= 1 else f"{percent:.2g}"


def _density_axis(ax: Axes, curves: pd.DataFrame) -> None:
    """Log-scale density in percent, reversed (100% on the left), ticked at the levels' densities
    (every n-th level when there are more than MAX_TICKS)."""
    percents = 100 * curves.groupby("level").density.mean().sort_index().to_numpy()
    ticks = percents[:: int(np.ceil(len(percents) / MAX_TICKS))]
    ax.set_xscale("log")
    ax.set_xlim(percents.max() * 1.08, percents.min() / 1.08)
    ax.set_xticks(ticks, [_tick_label(t) for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("percent of weights remaining")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, alpha=0.3)


def _line(ax: Axes, line: pd.DataFrame, **style) -> None:
    """Mean accuracy over seeds vs density, with a ± std band where there are several seeds."""
    x, mean, std = 100 * line.density, 100 * line.accuracy_mean, 100 * line.accuracy_std
    (drawn,) = ax.plot(x, mean, marker="o", markersize=3, **style)
    if (line.n_seeds > 1).any():
        ax.fill_between(x, mean - std, mean + std, color=drawn.get_color(), alpha=0.15, linewidth=0)


def _dense_line(ax: Axes, curves: pd.DataFrame) -> None:
    """Mean dense accuracy (dotted), with its ± std band over seeds."""
    dense = curves[(curves.intervention == "none") & (curves.level == 0)]
    if dense.empty:
        return
    mean, std = 100 * dense_accuracy(curves), 100 * float(dense.accuracy_std.iloc[0])
    ax.axhline(mean, color="grey", linestyle=":", linewidth=1.2, label="dense")
    if dense.n_seeds.iloc[0] > 1:
        ax.axhspan(mean - std, mean + std, color="grey", alpha=0.12, linewidth=0)


def mark_matching(ax: Axes, matches: pd.DataFrame, colors: dict) -> None:
    """The matching threshold (dashed) and, on each IMP line, a star at its sparsest matching level."""
    if matches.empty:
        return
    threshold, tolerance = 100 * matches.threshold.iloc[0], 100 * matches.tolerance.iloc[0]
    label = f"matching threshold (dense − {tolerance:.2f} points)"
    ax.axhline(threshold, color="grey", linestyle="--", linewidth=0.8, label=label)
    sparse = matches[matches.level > 0]
    for row in sparse.itertuples():
        ax.plot(
            100 * row.density, 100 * row.accuracy_mean, marker="*", markersize=14, linestyle="none",
            color=colors[row.rewind_iteration], markeredgecolor="black", zorder=5,
        )  # fmt: skip
    if len(sparse):  # one legend entry for all the stars
        ax.plot([], [], marker="*", markersize=10, linestyle="none", color="white", markeredgecolor="black",
                label="sparsest level still matching dense")  # fmt: skip


def _rewind_colors(ks) -> dict:
    """Rewind iterations in increasing order along viridis (dark = early)."""
    ks = sorted(ks)
    return {k: colormaps["viridis"](v) for k, v in zip(ks, np.linspace(0.0, 0.85, len(ks)))}


def _line_data(curves: pd.DataFrame, k, intervention: str) -> pd.DataFrame:
    return curves[(curves.rewind_iteration == k) & (curves.intervention == intervention)].sort_values("level")


def accuracy_vs_density(curves: pd.DataFrame, path: str | Path, matches: pd.DataFrame | None = None) -> Path:
    """Figure 1: test accuracy vs density; IMP rewound to each k (solid), the random pruning /
    reinitialisation baselines (dashed / dash-dotted, coloured by their k) and mean dense accuracy
    (dotted), each with its ± std band over seeds; with ``matches`` (:func:`~earlyphase.analysis.tables.
    matching_table`) the matching threshold (dashed grey) and a star at each k's sparsest matching level."""
    figure = Figure(figsize=(7, 4.5))
    ax = figure.add_subplot()
    imp_ks = sorted(curves.loc[curves.intervention == "none", "rewind_iteration"].unique())
    colors = _rewind_colors(curves.rewind_iteration.unique())
    for k in imp_ks:
        _line(ax, _line_data(curves, k, "none"), color=colors[k], label=f"IMP, rewind to k={k}")
    for baseline in RANDOM_BASELINES:
        for k in sorted(curves.loc[curves.intervention == baseline, "rewind_iteration"].unique()):
            label = f"{BASELINE_NAME[baseline]} (k={k})"
            style = {"color": colors[k], "linestyle": BASELINE_STYLE[baseline], "label": label}
            _line(ax, _line_data(curves, k, baseline), **style)
    _dense_line(ax, curves)
    if matches is not None:
        mark_matching(ax, matches, colors)
    _density_axis(ax, curves)
    ax.set_title("IMP with rewinding: test accuracy vs sparsity")
    ax.legend(fontsize=8, loc="lower left")
    return _save(figure, path)


def interventions_vs_density(curves: pd.DataFrame, path: str | Path) -> Path:
    """Figures 4–6: one panel per rewind iteration k that has interventions, one line per
    intervention (the random baselines are in :func:`accuracy_vs_density`, not here), with IMP
    rewound to k (black) and to 0 (grey, when k=0 was run) as references, and dense (dotted); every
    line with its ± std band over seeds."""
    others = curves[~curves.intervention.isin(("none", *RANDOM_BASELINES))]
    ks = sorted(others.rewind_iteration.unique())
    names = sorted(others.intervention.unique())
    colors = dict(zip(names, _cycle(len(names))))
    figure = Figure(figsize=(9 * len(ks), 4.8), layout="constrained")
    axes = figure.subplots(1, len(ks), squeeze=False, sharey=True)[0]
    for ax, k in zip(axes, ks):
        for name in sorted(others.loc[others.rewind_iteration == k, "intervention"].unique()):
            style = next((s for prefix, s in FAMILY_STYLE.items() if name.startswith(prefix)), "-")
            _line(ax, _line_data(curves, k, name), color=colors[name], linestyle=style, label=name)
        references = [(k, "black")] + ([(0, "grey")] if k != 0 else [])
        for ref_k, color in references:
            ref = _line_data(curves, ref_k, "none")
            if len(ref):
                _line(ax, ref, color=color, linewidth=2, label=f"IMP, rewind to k={ref_k}")
        _dense_line(ax, curves)
        _density_axis(ax, curves)
        ax.set_title(f"Interventions on the IMP subnetwork at k={k}")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(figure, path)


# one line style per family of interventions, so colours need only tell members apart
FAMILY_STYLE = {"signs_": "-", "permute_": "--", "noise_": ":", "random_": "-."}
_TAB20_WITHOUT_GREYS = [i for i in range(20) if i not in (14, 15)]  # grey is the k=0 reference


def _cycle(n: int) -> list:
    tab20 = colormaps["tab20"]
    return [tab20(_TAB20_WITHOUT_GREYS[i % len(_TAB20_WITHOUT_GREYS)]) for i in range(n)]


def telemetry_figure(telemetry: pd.DataFrame, path: str | Path) -> Path:
    """Figure 3: one panel per metric family over training iterations (mean ± std over seeds).
    The x-axis is symlog (linear on [0, 1], logarithmic beyond) so iteration 0 is shown; groups
    are line styles (all solid, kept dashed, pruned dotted); tracked weights are thin lines."""
    panels = [(title, _panel_rows(telemetry, metrics)) for title, metrics in TELEMETRY_PANELS]
    panels = [(title, rows) for title, rows in panels if len(rows)]
    columns = min(4, len(panels))
    nrows = int(np.ceil(len(panels) / columns))
    figure = Figure(figsize=(4 * columns, 3.2 * nrows), layout="constrained")
    axes = figure.subplots(nrows, columns, squeeze=False).ravel()
    for ax, (title, rows) in zip(axes, panels):
        tracked = title == "tracked weights"
        for i, ((metric, group), series) in enumerate(rows.groupby(["metric", "group"], sort=True)):
            style = {"color": f"C{i % 10}", "linewidth": 0.8} if tracked else _metric_style(rows, metric)
            label = None if tracked else metric if group == "all" else f"{metric} ({group})"
            (drawn,) = ax.plot(
                series.iteration, series["mean"], linestyle=GROUP_STYLE.get(group, "-"), label=label, **style
            )
            if not tracked and (series.n_seeds > 1).any():
                low, high = series["mean"] - series["std"], series["mean"] + series["std"]
                ax.fill_between(series.iteration, low, high, color=drawn.get_color(), alpha=0.15, linewidth=0)
        ax.set_xscale("symlog", linthresh=1, linscale=0.5)
        ax.set_xlim(left=0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("iteration")
        ax.grid(True, alpha=0.3)
        if not tracked:
            ax.legend(fontsize=7)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    return _save(figure, path)


def _panel_rows(telemetry: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    if metrics == [TRACKED_PREFIX]:
        return telemetry[telemetry.metric.str.startswith(TRACKED_PREFIX)]
    return telemetry[telemetry.metric.isin(metrics)]


def _metric_style(rows: pd.DataFrame, metric: str) -> dict:
    """One colour per metric of a panel (e.g. train vs test), the same across its groups."""
    return {"color": f"C{sorted(rows.metric.unique()).index(metric)}", "linewidth": 1.4}
