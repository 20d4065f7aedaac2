"""The report of an early-time linear dynamics experiment (docs/experiments.md C): figures per task,
the kernel error vs d, the summary tables, report.md."""

from __future__ import annotations

from pathlib import Path

from earlyphase.analysis.dynamics_figures import plot_configurations, plot_kernel_error
from earlyphase.analysis.dynamics_tables import (
    DynamicsTables,
    discrepancy_heading,
    formatted_discrepancy,
    formatted_kernel,
    kernel_heading,
    markdown,
)


def write_dynamics_report(tables: DynamicsTables, out: Path, title: str) -> list[Path]:
    """Per task, both models' loss and accuracy and their discrepancy over time for every configuration;
    the kernel error vs d; the summary tables; report.md. Returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    dynamics, kernel = tables.dynamics, tables.kernel
    text = [f"# Report: {title}", "", "Early-time linear dynamics (docs/experiments.md C).", ""]
    text += [discrepancy_heading(dynamics), "", markdown(formatted_discrepancy(dynamics)), ""]
    written = []
    for task, rows in dynamics.groupby("task", sort=True):
        heading = f"{task}: network vs linear model"
        written.append(plot_configurations(rows, out / f"dynamics_{task}.png", heading))
        text += [f"## {heading}", "", f"![{heading}]({written[-1].name})", ""]
    if kernel is not None:
        written.append(plot_kernel_error(kernel, out / "kernel_error.png"))
        text += ["## Kernel error vs input dimension", "", f"![kernel error]({written[-1].name})", ""]
        text += [kernel_heading(kernel), "", markdown(formatted_kernel(kernel)), ""]
    report = out / "report.md"
    report.write_text("\n".join(text))
    return [*written, report]
