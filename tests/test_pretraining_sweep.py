"""The pretraining axis of IMP sweeps (docs/experiments.md A4): the grid of trials, the refusals
before launch, the report's section on a hand-written table, and the smoke preset through Ray."""

from __future__ import annotations

import types

import pandas as pd
import pytest
import ray
from raytools import progress, run_killing_chain_worker, sweep_command, sweep_module, trial_dirs

from earlyphase.analysis.pretraining import fixed_density_levels, pretraining_curves, pretraining_table
from earlyphase.analysis.report import write_report
from earlyphase.errors import SpecError
from earlyphase.runs import get_run
from earlyphase.specs import PretrainingSpec
from earlyphase.sweep import SweepSpec, Trial
from earlyphase.tune.cli import main as sweep_main
from earlyphase.tune.progress import StageProgress

SMOKE_RUN = get_run("smoke_synthetic")  # 2 epochs of 64 iterations
P = 16
SMOKE_NAMES = {  # canonical name → P of the smoke preset
    "none": 0, "supervised": P, "random_labels_1.0": P, "rotation": P, "blur_4": P, "subset_random_640": P,
    "sparse_L1_rotation": P,
}  # fmt: skip


def _presets() -> dict[str, SweepSpec]:
    return sweep_module("pretraining").PRESETS


# --- the grid ------------------------------------------------------------------------------------


def test_modes_cross_lengths_and_chains_rewind_to_p():
    sweep = SweepSpec(
        run=SMOKE_RUN,
        seeds=(0, 1),
        rewind_iterations=(0, 16),
        levels=3,
        interventions=("random_prune",),
        pretraining_lengths=("16it", "1ep"),
        pretraining_modes=("none", "blur_2", "sparse_L2_k16_rotation"),
    )
    names = [(p.name, sweep.pretraining_iterations(p)) for p in sweep.pretrainings()]
    sparse = "sparse_L2_k16_rotation"
    assert names == [("none", 0), ("blur_2", 16), ("blur_2", 64), (sparse, 16), (sparse, 64)]
    dense = sweep.dense_trials()
    assert len(dense) == 2 * 5
    assert {t.keep_states for t in dense} == {(0, 16), ()}  # only the plain run keeps states at its k
    chains = [
        (t.seed, t.pretraining_spec.name, t.rewind_iteration, t.start_level) for t in sweep.imp_trials()
    ]
    assert chains[:6] == [
        (0, "none", 0, 0), (0, "none", 16, 0), (0, "blur_2", 16, 0), (0, "blur_2", 64, 0),
        (0, sparse, 16, 2), (0, sparse, 64, 2),
    ]  # fmt: skip
    assert len(chains) == 12
    branches = sweep.branch_trials()
    # 4 chains from level 0 get levels 1..3, the 2 sparse chains only their own level 3; per seed
    assert len(branches) == 2 * (4 * 3 + 2 * 1)
    sparse = [t for t in branches if t.start_level]
    assert {(t.level, t.rewind_iteration) for t in sparse} == {(3, 16), (3, 64)}
    assert all(t.pretraining == c.pretraining for t, c in zip(branches[:3], [sweep.imp_trials()[0]] * 3))


def test_the_axis_is_out_of_the_key_unless_used():
    plain = SweepSpec(run=SMOKE_RUN)
    assert "pretraining_modes" not in plain.to_dict() and "pretraining_lengths" not in plain.to_dict()
    assert [p.name for p in plain.pretrainings()] == ["none"]
    pretrained = plain.replace(pretraining_lengths=("16it",), pretraining_modes=("none", "rotation"))
    assert pretrained.to_dict()["pretraining_modes"] == ("none", "rotation")
    assert pretrained.key() != plain.key()
    assert SweepSpec.from_json(pretrained.to_json()) == pretrained
    assert SweepSpec.from_json(plain.to_json()) == plain


def test_names_read_back_to_their_specs():
    specs = [
        PretrainingSpec(),
        PretrainingSpec("supervised", "500it"),
        PretrainingSpec("random_labels", "2ep", label_fraction=0.25),
        PretrainingSpec("rotation", "500it", reset_optimizer=True),
        PretrainingSpec("blur", "500it", blur_factor=7),
        PretrainingSpec("subset", "1ep", subset_size=640),
        PretrainingSpec("blur", "500it", blur_factor=2, sparse_level=3, sparse_rewind_iteration=500),
        PretrainingSpec("rotation", "500it", sparse_level=12, reset_optimizer=True),
    ]
    for spec in specs:
        assert PretrainingSpec.from_name(spec.name, spec.iterations) == spec, spec.name
    assert specs[3].name == "rotation_reset_optimizer"
    assert specs[7].name == "sparse_L12_rotation_reset_optimizer"
    # a mode without its parameter takes the default
    assert PretrainingSpec.from_name("blur", "1it").blur_factor == 4
    assert PretrainingSpec.from_name("random_labels", "1it").name == "random_labels_1.0"


@pytest.mark.parametrize(
    "name, message",
    [
        ("jigsaw", "unknown pretraining 'jigsaw'"),
        ("rotation_2", "unknown pretraining"),
        ("sparse_L0_rotation", "unknown pretraining"),
        ("blur_x", "blur_factor must be a number"),
        ("random_labels_1.5", r"\[0, 1\]"),
        ("none_reset_optimizer", "mode other than none"),
    ],
)
def test_bad_names_are_refused(name, message):
    with pytest.raises(SpecError, match=message):
        PretrainingSpec.from_name(name, "10it")


# --- refusals before launch ----------------------------------------------------------------------

BAD_INPUT = [
    (["--modes", "none,jigsaw"], "unknown pretraining 'jigsaw'"),
    (["--modes", "random_labels_1.5"], "[0, 1]"),
    (["--modes", "random_labels_-0.1"], "[0, 1]"),
    (["--modes", "blur_3"], "does not divide"),
    (["--modes", "blur_0"], "blur factor must be >= 1"),
    (["--modes", "subset_5000"], "larger than"),
    (["--modes", "subset_645"], "not divisible"),
    (["--pretraining-lengths", "2ep"], "leaves no training"),
    (["--pretraining-lengths", "16it,5ep"], "leaves no training"),
    (["--pretraining-lengths", "16it,16"], "twice"),
    (["--modes", "rotation,rotation"], "listed twice"),
    (["--modes", "rotation", "--pretraining-lengths", ""], "needs --pretraining-lengths"),
    (["--modes", "rotation,sparse_L1_rotation"], "needs the mask of level 1"),
    (["--modes", "none,sparse_L3_rotation"], "levels >= 3"),
    (["--modes", "none,sparse_L1_k8_rotation"], "k=8"),
    (["--pretraining-mode", "rotation", "--pretraining-iterations", "16it"], "--modes"),
    (["--pretraining-mode", "rotation"], "iterations > 0"),
    (["--pretraining-blur-factor", "2"], "--modes"),
]


def test_bad_pretraining_is_refused_before_launch(tmp_path, capsys):
    presets = _presets()
    was_running = ray.is_initialized()
    for extra, message in BAD_INPUT:
        argv = ["--preset", "smoke", "--storage-path", str(tmp_path), *extra]
        assert sweep_main("pretraining", presets, "smoke", argv) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.count("\n") == 1 and message in err, (extra, err)
    assert list(tmp_path.iterdir()) == []
    assert ray.is_initialized() == was_running


# --- the report on a hand-written table ----------------------------------------------------------

SEED_OFFSET = {0: -0.005, 1: +0.005}  # every mean ± std is m ± 0.71 percentage points


def _rows(name, length, k, stage, levels, accuracies, seeds=(0, 1)):
    return [
        {
            "trial_id": f"{stage}-{name}-{length}-{k}-{seed}",
            "stage": stage,
            "seed": seed,
            "rewind_iteration": k,
            "pretraining": name,
            "pretraining_iterations": length,
            "intervention": "none",
            "level": level,
            "density": 0.8**level,
            "test_accuracy": accuracy + SEED_OFFSET[seed],
        }  # fmt: skip
        for seed in seeds
        for level, accuracy in zip(levels, accuracies)
    ]


def _hand_results() -> pd.DataFrame:
    rows = _rows("none", 0, None, "dense", [0], [0.90])
    rows += _rows("none", 0, 0, "imp", [1, 2, 3, 4], [0.89, 0.87, 0.85, 0.80])
    rows += _rows("none", 0, 100, "imp", [1, 2, 3, 4], [0.90, 0.90, 0.89, 0.88])
    rows += _rows("rotation", 100, None, "dense", [0], [0.86])
    rows += _rows("rotation", 100, 100, "imp", [1, 2, 3, 4], [0.88, 0.86, 0.84, 0.81])
    rows += _rows("sparse_L2_rotation", 100, None, "dense", [2], [0.83])
    rows += _rows("sparse_L2_rotation", 100, 100, "imp", [3, 4], [0.82, 0.79])
    return pd.DataFrame(rows)


def test_pretraining_curves_start_at_the_dense_run_and_average_seeds():
    curves = pretraining_curves(_hand_results())
    rotation = curves[curves.pretraining == "rotation"].set_index("level")
    assert list(rotation.index) == [0, 1, 2, 3, 4] and set(rotation.rewind_iteration) == {100}
    assert list(rotation.accuracy_mean) == pytest.approx([0.86, 0.88, 0.86, 0.84, 0.81])
    assert list(rotation.accuracy_std) == pytest.approx([0.01 / 2**0.5] * 5)
    sparse = curves[curves.pretraining == "sparse_L2_rotation"].set_index("level")
    assert list(sparse.index) == [2, 3, 4] and sparse.density[2] == pytest.approx(0.64)
    assert set(curves[curves.pretraining == "none"].rewind_iteration) == {0, 100}
    # every pretrained line reaches 2..4 (the sparse one starts at 2)
    assert fixed_density_levels(curves) == [2, 3, 4]
    assert fixed_density_levels(curves, count=2) == [3, 4]


def test_pretraining_table_rows_are_lines_and_columns_fixed_densities():
    curves = pretraining_curves(_hand_results())
    header, rule, *body = pretraining_table(curves, [2, 4]).splitlines()
    assert header == "| line | P | k | dense | L2 (64.0%) | L4 (41.0%) |"
    assert body == [
        "| none | 0 | 0 | 90.00 ± 0.71 | 87.00 ± 0.71 | 80.00 ± 0.71 |",
        "| none | 0 | 100 | 90.00 ± 0.71 | 90.00 ± 0.71 | 88.00 ± 0.71 |",
        "| rotation | 100 | 100 | 86.00 ± 0.71 | 86.00 ± 0.71 | 81.00 ± 0.71 |",
        "| sparse_L2_rotation | 100 | 100 |  | 83.00 ± 0.71 | 79.00 ± 0.71 |",
    ]


def test_report_draws_the_pretraining_figures(tmp_path):
    results = _hand_results().assign(experiment="hand")
    written = write_report(results, None, tmp_path, "hand")
    pngs = ["accuracy_vs_density.png", "pretraining_vs_density.png", "pretraining_length.png"]
    assert [p.name for p in written] == [*pngs, "report.md"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written[:-1])
    report = (tmp_path / "report.md").read_text()
    assert "| rotation | 100 | 100 | 86.00 ± 0.71 | 86.00 ± 0.71 | 84.00 ± 0.71 | 81.00 ± 0.71 |" in report
    assert "- 2 seed(s), 6 trials, 18 rows" in report  # the plain section counts plain rows only


# --- the smoke preset through Ray ----------------------------------------------------------------


def test_smoke_sweep_runs_every_mode_and_supervised_is_rewinding_to_p(local_ray, tmp_path):
    argv = ["--preset", "smoke", "--storage-path", str(tmp_path), "--name", "smoke"]
    assert sweep_main("pretraining", _presets(), "smoke", argv) == 0
    experiment = tmp_path / "smoke"
    table = pd.read_csv(experiment / "results.csv")
    assert not table.duplicated(["trial_id", "level"]).any()
    assert dict(zip(table.pretraining, table.pretraining_iterations)) == SMOKE_NAMES
    # one dense run per mode, trained once; the sparse one after the plain chains, at its level
    dense = trial_dirs(experiment, "dense")
    assert len(dense) == 6 and all(len(progress(d)) == 1 for d in dense)
    sparse_dense = trial_dirs(experiment, "sparse_dense")
    assert len(sparse_dense) == 1 and progress(sparse_dense[0]).level.tolist() == [1]
    rows = table[table.stage == "dense"].set_index("pretraining")
    assert rows.level.to_dict() == {name: int(name.startswith("sparse")) for name in SMOKE_NAMES}
    assert rows.density["sparse_L1_rotation"] == pytest.approx(0.8, abs=1e-3)
    # chains: plain at k = 0 and 16, every pretrained one at k = P; the sparse one from level 2
    imp = table[table.stage == "imp"]
    chains = imp.groupby(["pretraining", "rewind_iteration"])["level"].apply(list).to_dict()
    assert chains == {
        ("none", 0): [1, 2], ("none", 16): [1, 2],
        **{(name, P): [1, 2] for name in SMOKE_NAMES if name not in ("none", "sparse_L1_rotation")},
        ("sparse_L1_rotation", P): [2],
    }  # fmt: skip
    # supervised pretraining for P is bitwise the plain run rewound to k = P: identical accuracies

    def accuracies(pretraining, stage, k=None):
        rows = table[(table.pretraining == pretraining) & (table.stage == stage)]
        rows = rows if k is None else rows[rows.rewind_iteration == k]
        return rows.sort_values("level").test_accuracy.tolist()

    assert accuracies("supervised", "dense") == accuracies("none", "dense")
    assert len(accuracies("supervised", "imp")) == 2
    assert accuracies("supervised", "imp") == accuracies("none", "imp", k=P)
    assert accuracies("supervised", "imp") != accuracies("none", "imp", k=0)
    # a key per pretraining; plain rows keep the run's own key
    assert table.groupby("pretraining").spec_key.nunique().eq(1).all() and table.spec_key.nunique() == 7
    assert set(table.loc[table.pretraining == "none", "spec_key"]) == {SMOKE_RUN.key()}


def test_progress_counts_a_sparse_chain_from_its_pretrained_level():
    sparse = PretrainingSpec("rotation", "16it", sparse_level=3).to_json()
    chain = Trial("imp", 0, 16, pretraining=sparse)
    running = types.SimpleNamespace(
        status="RUNNING", config={"trial": chain.to_config(), "levels": 8}, last_result={"level": 5}
    )
    assert StageProgress.levels_of(running.config) == 5  # levels 4..8
    assert "2/5 levels" in StageProgress("sparse_imp").line([running])


def test_branches_after_supervised_pretraining_are_the_branches_rewound_to_p(local_ray, tmp_path):
    argv = [
        "--preset",
        "smoke",
        "--storage-path",
        str(tmp_path),
        "--name",
        "branches",
        "--modes",
        "none,supervised",
    ]
    argv += ["--rewind-iterations", "16", "--levels", "1", "--interventions", "random_prune"]
    assert sweep_main("pretraining", _presets(), "branches", argv) == 0
    table = pd.read_csv(tmp_path / "branches" / "results.csv")
    branch = table[table.stage == "branch"].set_index("pretraining")
    assert sorted(branch.index) == ["none", "supervised"]
    assert (branch.rewind_iteration == P).all() and (branch.level == 1).all()
    assert branch.pretraining_iterations.to_dict() == {"none": 0, "supervised": P}
    # the same state at P, mask and random draws: the same subnetwork trained the same way
    assert branch.test_accuracy["supervised"] == branch.test_accuracy["none"]
    imp = table[table.stage == "imp"].set_index("pretraining")
    assert branch.density["none"] == pytest.approx(imp.density["none"])


def test_worker_killed_mid_pretrained_chain_resumes_exactly(local_ray, tmp_path):
    """A retried chain continues from its last level with the pretrained state at P it was given:
    nothing is pretrained again and every level equals the same sweep run without the kill."""
    address = ray.get_runtime_context().gcs_address
    levels = 4
    argv = ["--preset", "smoke", "--modes", "rotation", "--levels", str(levels), "--steps", "6ep"]
    argv += ["--address", address, "--shared-storage", "--storage-path", str(tmp_path), "--max-failures", "2"]
    experiment = tmp_path / "kill"
    command = sweep_command(*argv, "--name", "kill", script="pretraining")
    returncode, out = run_killing_chain_worker(command, experiment, levels)
    assert returncode == 0, out
    table = pd.read_csv(experiment / "results.csv")
    chain = table[table.stage == "imp"].set_index("level").sort_index()
    assert chain.index.tolist() == list(range(1, levels + 1)) and (chain.rewind_iteration == P).all()
    resumed_at = int(chain.attempt_start_level.max())
    assert resumed_at >= 3  # restarted after its last finished level, not from level 1
    dense = trial_dirs(experiment, "dense")
    assert len(dense) == 1 and len(progress(dense[0])) == 1  # pretrained and trained once

    assert sweep_main("pretraining", _presets(), "ref", [*argv, "--name", "reference"]) == 0
    reference = pd.read_csv(tmp_path / "reference" / "results.csv")
    reference = reference[reference.stage == "imp"].set_index("level").sort_index()
    assert chain.test_accuracy.tolist() == reference.test_accuracy.tolist()
    assert chain.density.tolist() == reference.density.tolist()
