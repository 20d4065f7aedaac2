"""Figures of the early-time linear dynamics (Hu et al. 2020) as PNGs (matplotlib object API, Agg canvas).

Each takes the tidy tables of :mod:`earlyphase.linear_dynamics` or of a sweep (dynamics.csv, kernel.csv;
several seeds are averaged) and returns the path it saved.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullLocator

PLAIN = FuncFormatter(lambda value, _: f"{value:g}")  # 1, 10, 100 rather than 10⁰, 10¹, 10²

MODEL_COLOR = {"network": "tab:blue", "linear": "tab:orange", "both": "tab:green"}
SPLIT_STYLE = {"train": "-", "test": "--"}
PANELS = [
    ("loss", "loss  ½·mean (f − y)²"),
    ("accuracy", "accuracy (from step 1)"),
    ("discrepancy", "RMS discrepancy f − f_lin"),
]
# The columns that tell a sweep's dynamics trials apart (besides the seed), and how a row names them.
CONFIGURATION = ["task", "architecture", "width", "activation", "lr", "trained_layers"]
KERNEL_NETWORK = ["architecture", "activation", "trained_layers"]


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=150, bbox_inches="tight")
    return path


def trained_label(trained_layers: str) -> str:
    """``first layer trained``, ``second layer trained``, ``all layers trained``."""
    return ("all layers" if trained_layers == "both" else f"{trained_layers} layer") + " trained"


def configuration_label(architecture: str, width: int, activation: str, lr: float, layers: str) -> str:
    """``two_layer, m = 256, relu, lr 4, first layer trained``."""
    return f"{architecture}, m = {width}, {activation}, lr {lr:g}, {trained_label(layers)}"


def _dynamics_row(axes: list[Axes], table: pd.DataFrame, legend: bool = True) -> None:
    """Loss, accuracy and discrepancy panels of one configuration (seeds averaged). Accuracy starts at
    step 1: at step 0 both models output exactly 0, which counts as wrong."""
    curves = table.groupby(["metric", "model", "split", "step"], as_index=False).value.mean()
    for ax, (metric, label) in zip(axes, PANELS):
        rows = curves[(curves.metric == metric) & ((curves.step > 0) | (metric != "accuracy"))]
        for (model, split), line in rows.groupby(["model", "split"]):
            name = f"{split}" if model == "both" else f"{model}, {split}"
            ax.plot(line.step, line.value, SPLIT_STYLE[split], color=MODEL_COLOR[model], label=name)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=0)
        ax.xaxis.set_major_formatter(PLAIN)
        ax.set_xlabel("gradient-descent step")
        ax.set_title(label, fontsize=10)
        ax.grid(True, alpha=0.3)
        if legend:
            ax.legend(fontsize=8)


def plot_dynamics(table: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Loss, accuracy (network and linear model) and the discrepancy over GD steps of one configuration,
    train solid and test dashed; the step axis is symmetric-log so step 0 shows."""
    figure = Figure(figsize=(13, 3.8))
    _dynamics_row(list(figure.subplots(1, len(PANELS))), table)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_configurations(table: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """:func:`plot_dynamics` for each configuration of a sweep's dynamics table (one row of panels each,
    named above it; legends in the first row)."""
    groups = list(table.groupby(CONFIGURATION[1:], sort=True))
    figure = Figure(figsize=(13, 3.3 * len(groups) + 0.4), layout="constrained")
    rows = figure.subfigures(len(groups), 1, squeeze=False)[:, 0]
    for index, (row, (config, lines)) in enumerate(zip(rows, groups)):
        _dynamics_row(list(row.subplots(1, len(PANELS))), lines, legend=index == 0)
        row.suptitle(configuration_label(*config), fontsize=11, fontweight="bold")
    if title:
        figure.suptitle(title, fontsize=13)
    return _save(figure, path)


def plot_kernel_error(table: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Relative spectral error ‖Θ − Θ_lin‖₂/‖Θ‖₂ at init against the input dimension d (log axis, ticks
    at the measured d), one line per width and one panel per network (architecture, activation, trained
    layers); seeds averaged."""
    networks = list(table.groupby(KERNEL_NETWORK, sort=True))
    figure = Figure(figsize=(4.6 * len(networks), 3.9), layout="constrained")
    axes = figure.subplots(1, len(networks), sharey=True, squeeze=False)[0]
    for ax, ((architecture, activation, layers), rows) in zip(axes, networks):
        means = rows.groupby(["hidden_width", "input_dim"], as_index=False).relative_error.mean()
        for width, line in means.groupby("hidden_width"):
            ax.plot(line.input_dim, line.relative_error, marker="o", label=f"m = {width}")
        ax.set_xscale("log")
        ax.set_xticks(sorted(means.input_dim.unique()))
        ax.xaxis.set_major_formatter(PLAIN)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_ylim(bottom=0)
        ax.set_xlabel("input dimension d")
        ax.set_title(f"{architecture}, {activation}, {trained_label(layers)}", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("‖Θ − Θ_lin‖₂ / ‖Θ‖₂ at init")
    if title:
        figure.suptitle(title)
    return _save(figure, path)
