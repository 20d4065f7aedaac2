"""Tables and the report of an early-time linear dynamics experiment (docs/experiments.md C):
``dynamics.csv`` and ``kernel.csv`` (schema in :mod:`earlyphase.results`), pandas and matplotlib only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from earlyphase.analysis.dynamics_figures import (
    CONFIGURATION,
    KERNEL_NETWORK,
    plot_configurations,
    plot_kernel_error,
)
from earlyphase.results import DYNAMICS_COLUMNS, KERNEL_COLUMNS

EARLY_FRACTION = 0.01  # "early": the last measured step within the first 1 % of training (at least step 1)


@dataclass(frozen=True)
class DynamicsTables:
    """A dynamics experiment's tables; ``kernel`` is None when the sweep checked no kernel."""

    dynamics: pd.DataFrame
    kernel: pd.DataFrame | None


def _read(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty") from None
    missing = set(columns) - set(table.columns)
    if missing:
        raise ValueError(f"{path} lacks the columns {sorted(missing)}")
    if table.empty:
        raise ValueError(f"{path} has no rows")
    return table


def load_dynamics(experiment_dir: str | Path) -> DynamicsTables | None:
    """dynamics.csv (and kernel.csv if present) of an experiment directory; None if it has no
    dynamics.csv; one-line ValueError if a table is malformed."""
    directory = Path(experiment_dir)
    if not (directory / "dynamics.csv").is_file():
        return None
    kernel = directory / "kernel.csv"
    return DynamicsTables(
        _read(directory / "dynamics.csv", DYNAMICS_COLUMNS),
        _read(kernel, KERNEL_COLUMNS) if kernel.is_file() else None,
    )


def early_step(steps: list[int]) -> int:
    """The last measured step ≤ EARLY_FRACTION of the run's last step, at least the first step > 0."""
    positive = sorted(s for s in steps if s > 0)
    early = [s for s in positive if s <= EARLY_FRACTION * positive[-1]]
    return early[-1] if early else positive[0]


def discrepancy_summary(dynamics: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (seeds averaged): the train and test discrepancy early and at the last
    step, and both models' test accuracy at the last step."""
    rows = []
    for config, table in dynamics.groupby(CONFIGURATION, sort=True):
        mean = table.groupby(["step", "split", "model", "metric"]).value.mean()
        steps = sorted(table.step.unique())
        early, late = early_step(steps), steps[-1]
        rows.append(
            {
                **dict(zip(CONFIGURATION, config)),
                "seeds": table.seed.nunique(),
                "early_step": early,
                "last_step": late,
                "train_early": mean[(early, "train", "both", "discrepancy")],
                "train_last": mean[(late, "train", "both", "discrepancy")],
                "test_early": mean[(early, "test", "both", "discrepancy")],
                "test_last": mean[(late, "test", "both", "discrepancy")],
                "accuracy_network": mean[(late, "test", "network", "accuracy")],
                "accuracy_linear": mean[(late, "test", "linear", "accuracy")],
            }
        )
    return pd.DataFrame(rows)


def kernel_summary(kernel: pd.DataFrame) -> pd.DataFrame:
    """Relative kernel error (seeds averaged): one row per (network, width), one column per d."""
    return kernel.pivot_table(
        index=[*KERNEL_NETWORK, "hidden_width"], columns="input_dim", values="relative_error", aggfunc="mean"
    )


DISCREPANCY_HEADINGS = {
    "early_step": "early step",
    "last_step": "last step",
    "train_early": "train early",
    "train_last": "train last",
    "test_early": "test early",
    "test_last": "test last",
    "accuracy_network": "test acc network",
    "accuracy_linear": "test acc linear",
}


def _markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    body = ["| " + " | ".join(map(str, row)) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _formatted_discrepancy(dynamics: pd.DataFrame) -> pd.DataFrame:
    summary = discrepancy_summary(dynamics)
    for column in ("train_early", "train_last", "test_early", "test_last"):
        summary[column] = summary[column].map("{:.4f}".format)
    for column in ("accuracy_network", "accuracy_linear"):
        summary[column] = summary[column].map("{:.1%}".format)
    return summary.drop(columns="seeds").rename(columns={**DISCREPANCY_HEADINGS, "trained_layers": "trained"})


def _formatted_kernel(kernel: pd.DataFrame) -> pd.DataFrame:
    summary = kernel_summary(kernel)
    summary.columns = [f"d = {d}" for d in summary.columns]
    return summary.map("{:.3f}".format).reset_index().rename(columns={"hidden_width": "m"})


def _discrepancy_heading(dynamics: pd.DataFrame) -> str:
    seeds = dynamics.seed.nunique()
    return (
        "RMS discrepancy of network and linear model on train and test, early (the last step within "
        f"{EARLY_FRACTION:.0%} of training) and at the last step; test accuracy at the last step; "
        f"mean over {seeds} seed(s):"
    )


def _kernel_heading(kernel: pd.DataFrame) -> str:
    examples = ", ".join(str(n) for n in sorted(kernel.examples.unique()))
    return (
        "Kernel check: relative spectral error ‖Θ − Θ_lin‖₂/‖Θ‖₂ of the linear model's kernel against the "
        f"network's NTK at init, n = {examples} Gaussian inputs, by input dimension d:"
    )


def sweep_summary(dynamics: pd.DataFrame, kernel: pd.DataFrame | None) -> str:
    """What a dynamics sweep prints at its end: early vs late discrepancy per configuration, kernel error
    vs d."""
    text = [_discrepancy_heading(dynamics), "", _formatted_discrepancy(dynamics).to_string(index=False)]
    if kernel is not None:
        text += ["", _kernel_heading(kernel), "", _formatted_kernel(kernel).to_string(index=False)]
    return "\n".join(text)


def write_dynamics_report(tables: DynamicsTables, out: Path, title: str) -> list[Path]:
    """Per task, both models' loss and accuracy and their discrepancy over time for every configuration;
    the kernel error vs d; the summary tables; report.md. Returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    dynamics, kernel = tables.dynamics, tables.kernel
    text = [f"# Report: {title}", "", "Early-time linear dynamics (docs/experiments.md C).", ""]
    text += [_discrepancy_heading(dynamics), "", _markdown(_formatted_discrepancy(dynamics)), ""]
    written = []
    for task, rows in dynamics.groupby("task", sort=True):
        heading = f"{task}: network vs linear model"
        written.append(plot_configurations(rows, out / f"dynamics_{task}.png", heading))
        text += [f"## {heading}", "", f"![{heading}]({written[-1].name})", ""]
    if kernel is not None:
        written.append(plot_kernel_error(kernel, out / "kernel_error.png"))
        text += ["## Kernel error vs input dimension", "", f"![kernel error]({written[-1].name})", ""]
        text += [_kernel_heading(kernel), "", _markdown(_formatted_kernel(kernel)), ""]
    report = out / "report.md"
    report.write_text("\n".join(text))
    return [*written, report]
