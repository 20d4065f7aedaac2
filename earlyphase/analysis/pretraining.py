"""The pretraining section of a report (docs/experiments.md A4, Figures 7–8): IMP after each
pretraining next to plain IMP rewound to 0 and to k = P, as curves over density and at fixed
densities over the pretraining length P. Reads ``results.csv`` only (pandas and matplotlib)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from earlyphase.analysis.figures import _density_axis, _line, _save
from earlyphase.analysis.tables import imp_curves

NONE = "none"
FIXED_DENSITIES = 3  # the levels drawn and tabulated against P


def pretraining_curves(results: pd.DataFrame) -> pd.DataFrame:
    """IMP lines (intervention ``none``) of every (pretraining, P, k): :func:`imp_curves` per
    pretraining, with ``pretraining`` and ``pretraining_iterations`` columns. A pretrained line
    starts at its dense run: level 0, or the pretrained level after sparse pretraining."""
    lines = [
        imp_curves(rows).assign(pretraining=name, pretraining_iterations=int(length))
        for (name, length), rows in results.groupby(["pretraining", "pretraining_iterations"], sort=False)
    ]
    curves = pd.concat(lines, ignore_index=True)
    return curves[curves.intervention == NONE].reset_index(drop=True)


def fixed_density_levels(curves: pd.DataFrame, count: int = FIXED_DENSITIES) -> list[int]:
    """Up to ``count`` pruned levels spread over those every pretrained line reaches, the deepest
    included (e.g. 3, 6, 8 of 1..8)."""
    pretrained = curves[curves.pretraining != NONE]
    reached = [
        set(line.level) - {0} for _, line in pretrained.groupby(["pretraining", "pretraining_iterations"])
    ]
    levels = sorted(set.intersection(*reached)) if reached else []
    if len(levels) <= count:
        return levels
    picks = np.linspace(len(levels) - 1, 0, count, endpoint=False)[::-1]  # from the deepest down
    return [levels[int(round(i))] for i in picks]


def _density_percent(curves: pd.DataFrame, level: int) -> float:
    return 100 * float(curves.loc[curves.level == level, "density"].mean())


def pretraining_table(curves: pd.DataFrame, levels: list[int]) -> str:
    """Markdown: a row per line (plain IMP at each k, then each pretraining at each P), a column
    per level in ``levels`` (with its density) plus the line's dense run; cells test accuracy in
    percent, mean ± std over seeds."""
    keys = ["pretraining", "pretraining_iterations", "rewind_iteration"]
    header = "| line | P | k | dense | " + " | ".join(
        f"L{level} ({_density_percent(curves, level):.1f}%)" for level in levels
    )
    rows = [header + " |", "|---|---:|---:|---:|" + "---:|" * len(levels)]
    order = sorted(curves[keys].drop_duplicates().itertuples(index=False), key=lambda key: key[0] != NONE)
    for name, length, k in order:
        line = curves[(curves.pretraining == name) & (curves.pretraining_iterations == length)]
        line = line[line.rewind_iteration == k].set_index("level")
        cells = [
            f"{100 * line.accuracy_mean[lv]:.2f} ± {100 * line.accuracy_std[lv]:.2f}"
            if lv in line.index
            else ""
            for lv in (0, *levels)
        ]
        rows.append(f"| {name} | {length} | {k} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def pretraining_summary(results: pd.DataFrame) -> str:
    """What a pretraining sweep prints at its end: :func:`pretraining_table` at the fixed densities."""
    curves = pretraining_curves(results)
    heading = (
        f"IMP after pretraining (rewound to P) vs without (rewound to k): test accuracy (%), "
        f"mean ± std over {results.seed.nunique()} seed(s):"
    )
    return f"{heading}\n\n{pretraining_table(curves, fixed_density_levels(curves))}"


def _length_colors(lengths) -> dict:
    """A colour per pretraining length, in increasing order: blue, orange, green..."""
    return {length: f"C{i % 10}" for i, length in enumerate(sorted(lengths))}


def _plain_line(curves: pd.DataFrame, k) -> pd.DataFrame:
    plain = curves[(curves.pretraining == NONE) & (curves.rewind_iteration == k)]
    return plain.sort_values("level")


def _reference(ax: Axes, line: pd.DataFrame, **style) -> None:
    """A reference line: mean accuracy vs density, without the ± std band of the lines compared."""
    ax.plot(100 * line.density, 100 * line.accuracy_mean, marker="o", markersize=3, **style)


def _dense_reference(ax: Axes, curves: pd.DataFrame) -> None:
    dense = curves[(curves.pretraining == NONE) & (curves.level == 0)].accuracy_mean
    if len(dense):
        ax.axhline(100 * dense.mean(), color="grey", linestyle=":", linewidth=1.2, label="dense")


def accuracy_vs_density_by_mode(curves: pd.DataFrame, path: str | Path) -> Path:
    """Figure 7 style: a panel per pretraining (name), IMP after pretraining for P and rewound to
    P (solid, coloured by P, ± std band over several seeds); references without pretraining (their
    means): IMP rewound to k = 0 (grey) and to k = P (dashed, P's colour), and dense (dotted)."""
    names = [n for n in dict.fromkeys(curves.pretraining) if n != NONE]
    colors = _length_colors(curves.loc[curves.pretraining != NONE, "pretraining_iterations"].unique())
    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    figure = Figure(figsize=(5.2 * columns, 4.0 * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False, sharey=True).ravel()
    for ax, name in zip(axes, names):
        mode = curves[curves.pretraining == name]
        for length, line in mode.groupby("pretraining_iterations"):
            _line(
                ax,
                line.sort_values("level"),
                color=colors[length],
                linewidth=1.8,
                label=f"{name}, P={length}",
            )
        if len(zero := _plain_line(curves, 0)):
            _reference(ax, zero, color="0.45", linewidth=1.4, label="no pretraining, k=0")
        for length in sorted(mode.pretraining_iterations.unique()):
            if len(at_p := _plain_line(curves, length)):
                style = {"color": colors[length], "linestyle": "--", "linewidth": 1.2}
                _reference(ax, at_p, label=f"no pretraining, k={length}", **style)
        _dense_reference(ax, curves)
        _density_axis(ax, curves)
        ax.set_title(name, fontsize=11)
        ax.legend(fontsize=7, loc="best")
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    figure.suptitle("IMP after pretraining for P iterations, every level rewound to P")
    return _save(figure, path)


def accuracy_vs_pretraining_length(curves: pd.DataFrame, levels: list[int], path: str | Path) -> Path:
    """Accuracy at fixed densities (a panel per level) against the pretraining length P, one line
    per pretraining; without pretraining, IMP rewound to k is drawn at x = k (black), so k = P is
    the supervised early phase of the same length. The x-axis is symlog so 0 shows."""
    names = [n for n in dict.fromkeys(curves.pretraining) if n != NONE]
    colors = {name: colormaps["tab10"](i % 10) for i, name in enumerate(names)}
    figure = Figure(figsize=(4.6 * len(levels) + 1.8, 4.0), layout="constrained")
    axes = figure.subplots(1, len(levels), squeeze=False, sharey=True)[0]
    lengths = sorted(curves.loc[curves.pretraining != NONE, "pretraining_iterations"].unique())
    for ax, level in zip(axes, levels):
        at_level = curves[curves.level == level]
        for name in names:
            line = at_level[at_level.pretraining == name].sort_values("pretraining_iterations")
            _points(
                ax,
                line.pretraining_iterations,
                line,
                color=colors[name],
                markersize=7,
                label=f"{name}, P = x",
            )
        plain = at_level[at_level.pretraining == NONE].sort_values("rewind_iteration")
        if len(plain):  # on top, smaller: where a mode equals rewinding to k = P its marker shows through
            label = "no pretraining, rewind to k = x"
            _points(ax, plain.rewind_iteration, plain, color="black", markersize=3.5, label=label)
        ax.set_xscale("symlog", linthresh=max(1, min(lengths, default=1)), linscale=0.5)
        ticks = sorted({0, *lengths, *plain.rewind_iteration.astype(int)})
        ax.set_xticks(ticks, [str(t) for t in ticks], fontsize=8)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_title(
            f"level {level}: {_density_percent(curves, level):.1f}% of weights remaining", fontsize=10
        )
        ax.set_xlabel("pretraining length P / rewind iteration k (iterations)")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return _save(figure, path)


def _points(ax: Axes, x, line: pd.DataFrame, **style) -> None:
    mean, std = 100 * line.accuracy_mean.to_numpy(), 100 * line.accuracy_std.to_numpy()
    ax.errorbar(np.asarray(x, dtype=float), mean, yerr=std, marker="o", capsize=2, **style)


@dataclass
class Section:
    """A report section: the files it wrote and its markdown lines."""

    paths: list[Path] = field(default_factory=list)
    text: list[str] = field(default_factory=list)


def pretraining_section(results: pd.DataFrame, out: Path) -> Section:
    """The report's pretraining section (empty when nothing was pretrained): both figures and the
    table at the fixed densities."""
    if not (results.pretraining != NONE).any():
        return Section()
    curves = pretraining_curves(results)
    if not (curves.pretraining != NONE).any():  # dense runs only: no IMP line to draw
        return Section()
    levels = fixed_density_levels(curves)
    section = Section([accuracy_vs_density_by_mode(curves, out / "pretraining_vs_density.png")])
    heading = "Pretraining instead of the early phase (Figures 7–8)"
    section.text = [f"## {heading}", "", f"![{heading}]({section.paths[0].name})", ""]
    if levels:
        section.paths.append(accuracy_vs_pretraining_length(curves, levels, out / "pretraining_length.png"))
        section.text += [f"![accuracy vs pretraining length]({section.paths[1].name})", ""]
    section.text += [
        "Test accuracy (%), mean ± std over seeds; P and k in iterations:",
        "",
        pretraining_table(curves, levels),
        "",
    ]
    return section
