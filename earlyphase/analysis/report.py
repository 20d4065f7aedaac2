"""``python analysis/report.py <experiment dir> [--out DIR] [--tolerance POINTS]``: figures, tables and
a summary of one experiment, written to ``<experiment dir>/report/`` by default."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from earlyphase.analysis import figures
from earlyphase.analysis.dynamics_report import DynamicsTables, load_dynamics, write_dynamics_report
from earlyphase.analysis.pretraining import pretraining_section
from earlyphase.analysis.tables import (
    imp_curves,
    load_results,
    load_telemetry,
    markdown_table,
    matching_markdown,
    matching_note,
    matching_table,
    telemetry_curves,
)
from earlyphase.interventions import RANDOM_BASELINES


def _points(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of percentage points, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"the tolerance must be a finite number >= 0, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="analysis/report.py", description=__doc__.split("\n")[0])
    parser.add_argument(
        "experiment_dir", type=Path, help="the experiment directory holding results.csv or dynamics.csv"
    )
    parser.add_argument("--out", type=Path, help="output directory (default: <experiment dir>/report)")
    parser.add_argument(
        "--tolerance",
        type=_points,
        metavar="POINTS",
        help="IMP matches dense when its mean accuracy is at least dense's minus this many percentage "
        "points (default: one standard deviation of dense over seeds; 1 with a single seed)",
    )
    return parser


def summary(results: pd.DataFrame) -> list[str]:
    """Markdown lines: what was run and the dense accuracy."""
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
    return lines


def write_report(
    results: pd.DataFrame | None,
    telemetry: pd.DataFrame | None,
    out: Path,
    title: str,
    tolerance: float | None = None,
    dynamics: DynamicsTables | None = None,
) -> list[Path]:
    """Write the figures that apply and report.md into ``out``; return the paths written.
    ``tolerance`` (accuracy, not percent) is that of "matches dense" (default: one std of dense).
    The pretraining section has every pretraining's rows; the other sections those without. A
    linear dynamics experiment (``dynamics``, no results) has a report of its own."""
    if results is None:
        return write_dynamics_report(dynamics, out, title)
    out.mkdir(parents=True, exist_ok=True)
    pretraining = pretraining_section(results, out)
    results = results[results.pretraining == "none"]
    curves = imp_curves(results)
    matches = matching_table(curves, tolerance)
    is_main = curves.intervention.isin(("none", *RANDOM_BASELINES))
    main, branches = curves[is_main], curves[~is_main]
    branch_ks = branches.rewind_iteration.unique()
    at_branch_k = (curves.intervention == "none") & curves.rewind_iteration.isin(branch_ks)
    written, sections = [], []
    if len(main):
        written.append(figures.accuracy_vs_density(curves, out / "accuracy_vs_density.png", matches))
        sections.append(("IMP with rewinding and random baselines (Figure 1)", main, written[-1]))
    if len(branches):
        written.append(figures.interventions_vs_density(curves, out / "interventions_vs_density.png"))
        heading = "Interventions on the rewound subnetwork (Figures 4–6)"
        sections.append((heading, pd.concat([curves[at_branch_k], branches]), written[-1]))
    text = [f"# Report: {title}", "", *(summary(results) if len(results) else []), ""]
    if len(matches):
        note = matching_note(curves, matches, given=tolerance is not None)
        text += ["## Matching dense", "", note, "", matching_markdown(matches), ""]
    for heading, table, figure in sections:
        text += [f"## {heading}", "", f"![{heading}]({figure.name})", ""]
        text += ["Test accuracy (%), mean ± std over seeds:", "", markdown_table(table), ""]
    written += pretraining.paths
    text += pretraining.text
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
        dynamics = load_dynamics(args.experiment_dir)
        results = None if dynamics is not None else load_results(args.experiment_dir)
        telemetry = load_telemetry(args.experiment_dir)
    except (OSError, ValueError) as error:
        print(f"report: {error}", file=sys.stderr)
        return 2
    out = args.out or args.experiment_dir / "report"
    tolerance = None if args.tolerance is None else args.tolerance / 100
    title = args.experiment_dir.resolve().name
    for path in write_report(results, telemetry, out, title, tolerance, dynamics):
        print(f"wrote {path}")
    return 0
