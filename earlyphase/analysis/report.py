"""``python analysis/report.py <experiment dir> [--out DIR]``: figures, tables and a summary of one
experiment, written to ``<experiment dir>/report/`` by default."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from earlyphase.analysis import figures
from earlyphase.analysis.datadiet import data_diet_section
from earlyphase.analysis.pretraining import pretraining_section
from earlyphase.analysis.tables import (
    imp_curves,
    load_results,
    load_telemetry,
    markdown_table,
    matching_density,
    telemetry_curves,
)
from earlyphase.interventions import RANDOM_BASELINES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="analysis/report.py", description=__doc__.split("\n")[0])
    parser.add_argument("experiment_dir", type=Path, help="the experiment directory holding results.csv")
    parser.add_argument("--out", type=Path, help="output directory (default: <experiment dir>/report)")
    return parser


def summary(results: pd.DataFrame, curves: pd.DataFrame) -> list[str]:
    """Markdown lines: what was run, dense accuracy, and how far each rewind iteration matches dense."""
    imp = results[results.stage == "imp"]
    ks = sorted(imp.rewind_iteration.dropna().unique())
    dense = results.loc[results.stage == "dense", "test_accuracy"]
    lines = [
        f"- {results.seed.nunique()} seed(s), {results.trial_id.nunique()} trials, {len(results)} rows",
        f"- rewind iterations: {', '.join(str(k) for k in ks) or 'none'}",
        f"- IMP levels: {int(imp.level.max()) if len(imp) else 0}"
        + (f" (down to {100 * imp.density.min():.1f}% density)" if len(imp) else ""),
    ]
    if len(dense):
        spread = dense.std() if len(dense) > 1 else 0.0
        lines.append(f"- dense test accuracy: {100 * dense.mean():.2f} ± {100 * spread:.2f}%")
    matches = matching_density(curves)
    if len(matches):
        lines += ["", "Lowest density at which IMP stays within 1 percentage point of dense accuracy:", ""]
        for row in matches.itertuples():
            reach = (
                f"{100 * row.density:.1f}% density (level {row.level}, {100 * row.accuracy:.2f}%)"
                if row.level
                else "no sparse level (already below dense at level 1)"
            )
            lines.append(f"- rewind to k={row.rewind_iteration}: {reach}")
    return lines


def write_report(
    results: pd.DataFrame,
    telemetry: pd.DataFrame | None,
    out: Path,
    title: str,
    experiment_dir: Path | None = None,
) -> list[Path]:
    """Write the figures that apply and report.md into ``out``; return the paths written. The
    pretraining section has every pretraining's rows; the other sections those without pretraining.
    The data-diet section reads the experiment's scores and stability tables, where it has them."""
    out.mkdir(parents=True, exist_ok=True)
    pretraining = pretraining_section(results, out)
    diet = data_diet_section(results, experiment_dir, out)
    results = results[results.pretraining == "none"]
    curves = imp_curves(results)
    is_main = curves.intervention.isin(("none", *RANDOM_BASELINES))
    main, branches = curves[is_main], curves[~is_main]
    branch_ks = branches.rewind_iteration.unique()
    at_branch_k = (curves.intervention == "none") & curves.rewind_iteration.isin(branch_ks)
    written, sections = [], []
    if len(main):
        written.append(figures.accuracy_vs_density(curves, out / "accuracy_vs_density.png"))
        sections.append(("IMP with rewinding and random baselines (Figure 1)", main, written[-1]))
    if len(branches):
        written.append(figures.interventions_vs_density(curves, out / "interventions_vs_density.png"))
        heading = "Interventions on the rewound subnetwork (Figures 4–6)"
        sections.append((heading, pd.concat([curves[at_branch_k], branches]), written[-1]))
    text = [f"# Report: {title}", "", *(summary(results, curves) if len(results) else []), ""]
    for heading, table, figure in sections:
        text += [f"## {heading}", "", f"![{heading}]({figure.name})", ""]
        text += ["Test accuracy (%), mean ± std over seeds:", "", markdown_table(table), ""]
    written += pretraining.paths + diet.paths
    text += pretraining.text + diet.text
    if telemetry is not None:
        written.append(figures.telemetry_figure(telemetry_curves(telemetry), out / "telemetry.png"))
        seeds = telemetry.seed.nunique()
        text += ["## Early-phase telemetry (Figure 3)", "", f"![telemetry]({written[-1].name})", ""]
        text += [f"Mean ± std over {seeds} seed(s); tracked weights are those of the lowest seed.", ""]
    if not written:
        text += ["No IMP levels or branches in this experiment: nothing to plot.", ""]
    report = out / "report.md"
    report.write_text("\n".join(text))
    return [*written, report]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if not args.experiment_dir.is_dir():
            raise FileNotFoundError(f"no experiment directory {args.experiment_dir}")
        results = load_results(args.experiment_dir)
        telemetry = load_telemetry(args.experiment_dir)
    except (OSError, ValueError) as error:
        print(f"report: {error}", file=sys.stderr)
        return 2
    out = args.out or args.experiment_dir / "report"
    for path in write_report(
        results, telemetry, out, args.experiment_dir.resolve().name, args.experiment_dir
    ):
        print(f"wrote {path}")
    return 0
