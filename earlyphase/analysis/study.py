"""The Optuna study of a search experiment (sweeps/search.py) and Optuna's own figures of it, as PNGs:
optimisation history, parameter importances (Optuna's default evaluator, PED-ANOVA) and, for the
multi-objective earliest-k search, the Pareto front (chains that fell below dense are infeasible)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import optuna

from earlyphase.sweep import STUDY_FILE

SEARCH_SPEC_FILE = "sweep.json"  # the spec an experiment was started with (written by the Ray layer)
ACCURACY = "validation accuracy"


def load_study(experiment_dir: str | Path) -> optuna.Study | None:
    """The study of a search experiment, or None for other experiments. It is named after the
    experiment and stored in the search's ``storage_url``, else in study.db in the experiment."""
    experiment_dir = Path(experiment_dir)
    spec_file = experiment_dir / SEARCH_SPEC_FILE
    url = json.loads(spec_file.read_text()).get("storage_url") if spec_file.is_file() else None
    if not url:
        database = experiment_dir / STUDY_FILE
        if not database.is_file():
            return None
        url = f"sqlite:///{database.resolve()}"
    name = experiment_dir.resolve().name
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=name, storage=url)
    except KeyError:
        raise ValueError(f"no study {name!r} in {url}") from None


def _save(axes, path: Path) -> Path:
    from matplotlib import pyplot

    figure = axes.figure
    figure.set_size_inches(7, 4.5)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    pyplot.close(figure)
    return path


def study_figures(study: optuna.Study, out: Path) -> tuple[list[Path], list[str]]:
    """Optuna's figures of ``study`` in ``out``, and the report's markdown section showing them."""
    import matplotlib
    from optuna.visualization import matplotlib as optuna_figures

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    multi = len(study.directions) > 1
    target = (lambda trial: trial.values[1]) if multi else None
    name = f"{ACCURACY} at the target density" if multi else ACCURACY
    parameters = {p for trial in complete for p in trial.params}
    written: list[tuple[str, Path]] = []
    with warnings.catch_warnings(), matplotlib.rc_context():  # Optuna sets its own style globally
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        history = optuna_figures.plot_optimization_history(study, target=target, target_name=name)
        written.append(("Optimisation history", _save(history, out / "optuna_history.png")))
        if len(parameters) > 1:
            importances = optuna_figures.plot_param_importances(study, target=target, target_name=name)
            written.append(("Parameter importances", _save(importances, out / "optuna_importances.png")))
        if multi:
            front = optuna_figures.plot_pareto_front(study, target_names=["rewind iteration k", name])
            written.append(("Pareto front", _save(front, out / "optuna_pareto_front.png")))
    lines = [
        "## Optuna study",
        "",
        f"Study `{study.study_name}`: {len(complete)} complete trials of {len(study.trials)}, selected on "
        f"{ACCURACY} (the test set plays no part).",
        "",
    ]
    for heading, path in written:
        lines += [f"### {heading}", "", f"![{heading}]({path.name})", ""]
    return [path for _, path in written], lines
