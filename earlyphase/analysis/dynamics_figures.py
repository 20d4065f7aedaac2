"""Figures of the early-time linear dynamics (Hu et al. 2020) as PNGs (matplotlib object API, Agg canvas).

Both take the tidy tables of :mod:`earlyphase.linear_dynamics` (several seeds are averaged) and return
the path they saved.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

MODEL_COLOR = {"network": "tab:blue", "linear": "tab:orange", "both": "tab:green"}
SPLIT_STYLE = {"train": "-", "test": "--"}
PANELS = [
    ("loss", "loss  ½·mean (f − y)²"),
    ("accuracy", "accuracy"),
    ("discrepancy", "RMS discrepancy f − f_lin"),
]


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=150, bbox_inches="tight")
    return path


def plot_dynamics(table: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Loss, accuracy (network and linear model) and the discrepancy over GD steps, train solid and test
    dashed; the step axis is symmetric-log so step 0 shows."""
    curves = table.groupby(["metric", "model", "split", "step"], as_index=False).value.mean()
    figure = Figure(figsize=(13, 3.8))
    for ax, (metric, label) in zip(figure.subplots(1, len(PANELS)), PANELS):
        for (model, split), line in curves[curves.metric == metric].groupby(["model", "split"]):
            name = f"{split}" if model == "both" else f"{model}, {split}"
            ax.plot(line.step, line.value, SPLIT_STYLE[split], color=MODEL_COLOR[model], label=name)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=0)
        ax.set_xlabel("gradient-descent step")
        ax.set_title(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_kernel_error(table: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Relative spectral error ‖Θ − Θ_lin‖₂/‖Θ‖₂ at init against the input dimension d, one line per width."""
    figure = Figure(figsize=(5, 3.8))
    ax = figure.subplots()
    means = table.groupby(["hidden_width", "input_dim"], as_index=False).relative_error.mean()
    for width, line in means.groupby("hidden_width"):
        ax.plot(line.input_dim, line.relative_error, marker="o", label=f"m = {width}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("input dimension d")
    ax.set_ylabel("relative spectral error of the linear kernel")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return _save(figure, path)
