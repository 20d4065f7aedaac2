"""The data-diet and instability sections of a report (docs/experiments.md B): agreement of example
scores between networks, IMP after pretraining on score-chosen subsets, the instability curve over
the rewind iteration k and per-example barriers. Reads scores.csv, results.csv, stability.csv and
example_barriers.csv (pandas and matplotlib only)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from earlyphase.analysis.figures import _density_axis, _line, _save
from earlyphase.analysis.pretraining import NONE, Section, pretraining_curves

PAIR_KEYS = ["pretraining", "pretraining_iterations", "level", "rewind_iteration"]


def _markdown(table: pd.DataFrame) -> str:
    """A plain markdown table, floats with 4 significant digits."""
    cells = [
        [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in table.itertuples(index=False)
    ]
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def averaged_scores(scores: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each score averaged over the networks that computed it, indexed by example."""
    means = scores.groupby(["score", "example_index"]).value.mean()
    return {name: means[name].sort_index().to_numpy() for name in scores.score.unique()}


def score_agreement(scores: pd.DataFrame) -> pd.DataFrame:
    """Per score: the networks that computed it and the mean Spearman rank correlation over pairs of
    networks (NaN for one network); per pair of scores, the Spearman correlation of their averages
    (``networks`` = 0)."""
    rows = []
    for name, table in scores.groupby("score", sort=False):
        wide = table.pivot(index="example_index", columns="network", values="value")
        correlations = wide.rank().corr().to_numpy()  # Spearman: Pearson of ranks
        pairs = correlations[np.triu_indices(len(correlations), 1)]
        rows.append(
            {"score": name, "networks": wide.shape[1], "spearman": pairs.mean() if len(pairs) else np.nan}
        )
    averaged = pd.DataFrame(averaged_scores(scores))
    for a, b in itertools.combinations(averaged.columns, 2):
        rows.append(
            {"score": f"{a} vs {b}", "networks": 0, "spearman": averaged[[a, b]].rank().corr().iloc[0, 1]}
        )
    return pd.DataFrame(rows)


def score_agreement_summary(scores: pd.DataFrame) -> str:
    lines = ["Agreement of example scores (Spearman rank correlation):"]
    for row in score_agreement(scores).dropna().itertuples():
        what = f"between {row.networks} networks" if row.networks else "of the averages"
        lines.append(f"  {row.score:<24} {what:<22} {row.spearman:+.3f}")
    return "\n".join(lines)


def pair_barriers(stability: pd.DataFrame) -> pd.DataFrame:
    """One row per copy pair: its test and train error barriers (max along α − mean of the ends)."""

    def barrier(errors: pd.Series) -> float:
        return errors.max() - (errors.iloc[0] + errors.iloc[-1]) / 2

    ordered = stability.sort_values("alpha")
    grouped = ordered.groupby(["seed", *PAIR_KEYS, "density"])
    return pd.DataFrame(
        {"test_barrier": grouped.test_error.agg(barrier), "train_barrier": grouped.train_error.agg(barrier)}
    ).reset_index()


def instability_curve(stability: pd.DataFrame) -> pd.DataFrame:
    """Test and train error barriers per (pretraining, P, level, k): mean and std over seeds."""
    pairs = pair_barriers(stability)
    curve = pairs.groupby(PAIR_KEYS).agg(
        test_barrier=("test_barrier", "mean"),
        test_barrier_std=("test_barrier", lambda s: s.std(ddof=1) if len(s) > 1 else 0.0),
        train_barrier=("train_barrier", "mean"),
        seeds=("seed", "nunique"),
    )
    return curve.reset_index().sort_values(PAIR_KEYS)


def connected_fractions(barriers: pd.DataFrame, eps: float = 0.0) -> pd.DataFrame:
    """Per copy pair: the fraction of training examples whose midpoint loss barrier is <= ``eps``."""
    connected = barriers.assign(connected=barriers.barrier <= eps)
    return connected.groupby(["seed", *PAIR_KEYS]).connected.mean().rename("fraction_connected").reset_index()


def instability_summary(stability: pd.DataFrame, barriers: pd.DataFrame, eps: float = 0.0) -> str:
    curve = instability_curve(stability)
    fractions = connected_fractions(barriers, eps).groupby(PAIR_KEYS).fraction_connected.mean()
    lines = ["Instability: test error barrier (percentage points) between two copies trained from k:"]
    for row in curve.itertuples():
        fraction = fractions[(row.pretraining, row.pretraining_iterations, row.level, row.rewind_iteration)]
        lines.append(
            f"  {row.pretraining:<24} level {row.level:<2} k={row.rewind_iteration:<6} "
            f"barrier {100 * row.test_barrier:6.2f} ± {100 * row.test_barrier_std:.2f}  "
            f"examples connected {100 * fraction:5.1f}%"
        )
    return "\n".join(lines)


def subset_name_parts(name: str) -> tuple[str, int]:
    """``subset_easy_el2n_1000`` → (``easy_el2n``, 1000); offsets stay in the kind."""
    parts = name.removeprefix("subset_").split("_")
    size_at = max(i for i, part in enumerate(parts) if part.isdigit())
    return "_".join(parts[:size_at] + parts[size_at + 1 :]), int(parts[size_at])


def subset_accuracy_vs_density(results: pd.DataFrame, path: str | Path) -> Path:
    """A panel per subset size: IMP after pretraining on each subset kind (solid), and IMP without
    pretraining rewound to every k (grey shades, dashed), the references of full-data rewinding."""
    curves = pretraining_curves(results)
    subsets = curves[curves.pretraining.str.startswith("subset_")]
    sizes = sorted({subset_name_parts(n)[1] for n in subsets.pretraining.unique()})
    plain = curves[curves.pretraining == NONE]
    ks = sorted(plain.rewind_iteration.dropna().unique())
    figure = Figure(figsize=(5.6 * len(sizes), 4.2), layout="constrained")
    axes = figure.subplots(1, len(sizes), squeeze=False, sharey=True)[0]
    for ax, size in zip(axes, sizes):
        for i, (name, line) in enumerate(subsets.groupby("pretraining", sort=False)):
            kind, n = subset_name_parts(name)
            if n == size:
                P = int(line.pretraining_iterations.iloc[0])
                _line(ax, line.sort_values("level"), color=f"C{i}", linewidth=1.8, label=f"{kind}, P={P}")
        for j, k in enumerate(ks):
            ref = plain[plain.rewind_iteration == k].sort_values("level")
            shade = str(0.15 + 0.5 * j / max(1, len(ks) - 1))
            _line(ax, ref, band=False, color=shade, linestyle="--", linewidth=1.2, label=f"full data, k={k}")
        _density_axis(ax, curves)
        ax.set_title(f"pretrained on {size} examples", fontsize=11)
        ax.legend(fontsize=7, loc="best")
    figure.suptitle("IMP after pretraining on a subset for P iterations, every level rewound to P")
    return _save(figure, path)


def instability_figure(curve: pd.DataFrame, path: str | Path) -> Path:
    """The instability curve: test error barrier against the rewind iteration k, a line per
    (pretraining, level); ± std over seeds."""
    figure = Figure(figsize=(6.5, 4.2))
    ax = figure.add_subplot()
    for (name, level), line in curve.groupby(["pretraining", "level"], sort=False):
        line = line.sort_values("rewind_iteration")
        label = f"{name}, " + ("dense" if level == 0 else f"level {level}")
        ax.errorbar(line.rewind_iteration, 100 * line.test_barrier, yerr=100 * line.test_barrier_std,
                    marker="o", capsize=2, label=label)  # fmt: skip
    positive = curve.rewind_iteration[curve.rewind_iteration > 0]
    ax.set_xscale("symlog", linthresh=max(1, positive.min()) if len(positive) else 1)
    ax.set_xlabel("rewind iteration k (copies trained from here)")
    ax.set_ylabel("test error barrier (percentage points)")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(figure, path)


def barrier_histogram(barriers: pd.DataFrame, path: str | Path) -> Path:
    """Histograms of per-example midpoint loss barriers, one per k (dense, no pretraining, first seed
    where those exist; else every pair's first)."""
    chosen = barriers[(barriers.pretraining == NONE) & (barriers.level == 0)]
    chosen = chosen if len(chosen) else barriers
    chosen = chosen[chosen.seed == chosen.seed.min()]
    figure = Figure(figsize=(6.5, 4.2))
    ax = figure.add_subplot()
    low, high = np.quantile(chosen.barrier, [0.001, 0.999])
    bins = np.linspace(min(low, 0), max(high, 0) + 1e-9, 60)
    for (name, k, level), pair in chosen.groupby(["pretraining", "rewind_iteration", "level"]):
        ax.hist(pair.barrier.clip(bins[0], bins[-1]), bins=bins, histtype="step", linewidth=1.4,
                label=f"{name}, level {level}, k={k}")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("per-example midpoint loss barrier ℓ(½(w_A + w_B)) − ½(ℓ(w_A) + ℓ(w_B))")
    ax.set_ylabel("training examples")
    ax.legend(fontsize=8)
    return _save(figure, path)


def connectivity_vs_accuracy(results: pd.DataFrame, barriers: pd.DataFrame, eps: float = 0.0) -> pd.DataFrame:
    """Per (seed, pretraining, k) of the dense copies: the fraction of examples connected, and the test
    accuracy of IMP rewound to k at the deepest level every such chain reached (its density)."""
    fractions = connected_fractions(barriers[barriers.level == 0], eps)
    imp = results[(results.stage == "imp") & (results.intervention == "none")]
    if imp.empty or fractions.empty:
        return pd.DataFrame()
    level = int(imp.groupby(["seed", "pretraining", "rewind_iteration"])["level"].max().min())
    at_level = imp[imp.level == level][
        ["seed", "pretraining", "rewind_iteration", "density", "test_accuracy"]
    ]
    at_level = at_level.astype({"rewind_iteration": int})
    return fractions.merge(at_level, on=["seed", "pretraining", "rewind_iteration"]).assign(imp_level=level)


def connectivity_scatter(table: pd.DataFrame, path: str | Path) -> Path:
    """Fraction of examples connected (dense copies from k) against IMP's accuracy at a fixed density."""
    figure = Figure(figsize=(6, 4.2))
    ax = figure.add_subplot()
    points = ax.scatter(100 * table.fraction_connected, 100 * table.test_accuracy, c=table.rewind_iteration,
                        cmap="viridis")  # fmt: skip
    figure.colorbar(points, ax=ax, label="rewind iteration k")
    ax.set_xlabel("training examples linearly connected (%)")
    density = 100 * table.density.mean()
    ax.set_ylabel(f"IMP test accuracy at {density:.1f}% density (%)")
    ax.grid(True, alpha=0.3)
    return _save(figure, path)


def data_diet_section(results: pd.DataFrame, experiment_dir: Path | None, out: Path) -> Section:
    """The report's section on subsets and instability: whichever of its tables the experiment has."""
    section = Section()
    if experiment_dir is None:
        return section
    scores_path = Path(experiment_dir) / "scores.csv"
    if scores_path.is_file():
        agreement = score_agreement(pd.read_csv(scores_path))
        section.text += ["## Example scores (data diet)", "", "Spearman rank correlation:", ""]
        section.text += [_markdown(agreement), ""]
    imp = results[results.stage == "imp"]
    if imp.pretraining.str.startswith("subset_").any():
        section.paths.append(subset_accuracy_vs_density(results, out / "subsets_vs_density.png"))
        heading = "IMP after pretraining on subsets, with full-data rewinding"
        section.text += [f"## {heading}", "", f"![{heading}]({section.paths[-1].name})", ""]
    stability_path = Path(experiment_dir) / "stability.csv"
    barriers_path = Path(experiment_dir) / "example_barriers.csv"
    if stability_path.is_file() and barriers_path.is_file():
        curve = instability_curve(pd.read_csv(stability_path))
        barriers = pd.read_csv(barriers_path)
        section.paths.append(instability_figure(curve, out / "instability.png"))
        section.paths.append(barrier_histogram(barriers, out / "example_barriers.png"))
        section.text += ["## Instability analysis", "", f"![instability]({section.paths[-2].name})", ""]
        section.text += [f"![per-example barriers]({section.paths[-1].name})", ""]
        section.text += [_markdown(curve), ""]
        scatter = connectivity_vs_accuracy(results, barriers)
        if len(scatter):
            section.paths.append(connectivity_scatter(scatter, out / "connected_vs_accuracy.png"))
            section.text += [f"![fraction connected vs IMP accuracy]({section.paths[-1].name})", ""]
    return section
