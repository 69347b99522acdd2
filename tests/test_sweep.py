"""Sweeps (issue 23): the range syntax and its checks, real sweeps of tiny spirals-mlp trials (each a run process),
pruning through a trial's endpoint, a killed trial, a killed and resumed sweep, a stopped and resumed sweep, two
sweep processes on one folder, and two workers sharing one study in a real PostgreSQL server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tui_trainer.config import ConfigError, load_preset
from tui_trainer.run.folder import RunDir
from tui_trainer.sweep.events import fold_sweep, read_events
from tui_trainer.sweep.folder import SweepDir, list_sweeps
from tui_trainer.sweep.slots import plan_slots
from tui_trainer.sweep.space import parse_param, parse_params
from tui_trainer.sweep.spec import Asked, SweepSpec, build_spec, read_preset, read_spec

optuna = pytest.importorskip("optuna", reason="sweeps need Optuna: pip install '.[sweep]'")

TINY = ["--set", "data.n_samples=400", "--set", "train.log_every=5", "--device", "cpu"]
"""Trials of 10 steps an epoch (~10 ms on one idle core)."""


def cli(*args: str, timeout: float = 240, env: dict | None = None) -> subprocess.CompletedProcess:
    """The command line as a user runs it, stdout a pipe."""
    return subprocess.run([sys.executable, "-m", "tui_trainer", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def the_sweep(folder: Path) -> SweepDir:
    found = list_sweeps(folder)
    assert len(found) == 1, found
    return found[0]


def study_of(sweep: SweepDir):
    from tui_trainer.sweep.study import open_storage, open_study

    spec = read_spec(sweep.spec_path)
    return open_study(spec, open_storage(spec, sweep))


def trial_events(sweep: SweepDir, number: int) -> list[dict]:
    return [e for e in read_events(sweep.events_path)[0] if e.get("event") == "trial" and e["number"] == number]


def running(sweep: SweepDir, numbers: set[int]) -> bool:
    return numbers <= {n for n, t in fold_sweep(sweep.events_path).trials.items() if t.state == "running"}


def run_of(sweep: SweepDir, number: int) -> RunDir:
    return RunDir(fold_sweep(sweep.events_path).trials[number].run)


# ---------------------------------------------------------------------------
# the space, the spec, the slots (no process)


def test_ranges_read_as_optunas_suggest_calls_would():
    lr = parse_param("optimizer.lr=log:1e-4..1e-1")
    assert (lr.kind, lr.low, lr.high, lr.log, lr.text()) == ("float", 1e-4, 0.1, True, "log:0.0001..0.1")
    depth = parse_param("model.depth=1..7:2")  # a whole-number key: suggest_int, with a step
    assert (depth.kind, depth.low, depth.high, depth.step) == ("int", 1, 7, 2)
    hidden = parse_param("model.hidden=choice:[64,64]|[256,256]")
    assert hidden.choices == ([64, 64], [256, 256]) and hidden.optuna_choices() == ("[64, 64]", "[256, 256]")
    assert hidden.value_of("[256, 256]") == [256, 256]  # Optuna keeps the text; the trial gets the list back
    assert parse_param("optimizer.name=choice:adam|sgd").choices == ("adam", "sgd")
    # a preset's [sweep.params] table: the same text, a list of choices, or suggest_float's own arguments
    table = {"optimizer": {"lr": {"low": 1e-4, "high": 0.1, "log": True}}, "model": {"dropout": "0..0.5",
                                                                                     "hidden": [[16], [32, 32]]}}
    params = {p.key: p for p in parse_params(["model.dropout=0..0.3"], table)}  # --param replaces the table's key
    assert params["optimizer.lr"] == lr and params["model.dropout"].high == 0.3
    assert params["model.hidden"].choices == ([16], [32, 32])
    from tui_trainer.sweep.study import distributions

    spec = SweepSpec(preset="spirals-mlp", config=load_preset("spirals-mlp").to_dict(), params=(lr, depth, hidden))
    dists = distributions(spec)
    assert dists["optimizer.lr"] == optuna.distributions.FloatDistribution(1e-4, 0.1, log=True)
    assert dists["model.depth"] == optuna.distributions.IntDistribution(1, 7, step=2)
    assert dists["model.hidden"] == optuna.distributions.CategoricalDistribution(("[64, 64]", "[256, 256]"))


@pytest.mark.parametrize("text, said", [
    ("optimizer.lr=1e-4..", "'' in '1e-4..' is not a number; allowed: LOW..HIGH, log:LOW..HIGH"),
    ("optimizer.lr=0.01", "is not a range; allowed: LOW..HIGH, log:LOW..HIGH, LOW..HIGH:STEP or choice:A|B|C "
                          "(a fixed value is --set, not --param)"),
    ("regularization.dropout=0..0.5", "unknown key regularization.dropout (did you mean 'model.dropout'? dropout is "
                                      "in [model])"),
    ("optimizer.lrr=log:1e-4..1e-1", "unknown key optimizer.lrr (did you mean 'lr'?)"),
    ("optimizer.lr=log:1e-4..1e3", "the range goes outside what the key allows: optimizer.lr = 1000.0: must be > 0 "
                                   "and <= 100"),
    ("model.dropout=0..1", "model.dropout = 1.0: must be >= 0 and < 1"),
    ("optimizer.name=choice:adam|sgdd", "optimizer.name = 'sgdd': not allowed (did you mean 'sgd'?)"),
    ("model.depth=1.5..4", "model.depth is a whole number: give whole ends"),
    ("model.hidden=16..64", "model.hidden is a list, not a number: search it with choice:A|B"),
    ("optimizer.lr=log:0..0.1", "a log range needs LOW > 0"),
    ("model.depth=1..8:2", "HIGH - LOW must be a multiple of STEP"),
    ("train.device=choice:cpu|cuda", "train.device cannot be searched"),
])
def test_a_bad_range_is_one_line_naming_the_key_and_what_is_allowed(text, said):
    with pytest.raises(ConfigError) as caught:
        parse_param(text)
    message = str(caught.value)
    assert message.startswith(f"--param {text}: ") and said in message and "\n" not in message


def test_a_preset_with_a_sweep_table_is_a_sweep_and_still_a_preset(tmp_path):
    """sweep.toml (what a sweep writes of itself) reads back as the same sweep; `train` reads it as a preset."""
    cfg, table = read_preset("spirals-mlp")
    spec = build_spec("spirals-mlp", cfg, table, Asked(params=["optimizer.lr=log:1e-4..1e-1",
                                                               "model.hidden=choice:[16]|[32,32]"], trials=7),
                      plan=lambda *_: plan_slots("cpu", 2, None, cores=2))
    path = tmp_path / "sweep.toml"
    path.write_text(spec.to_toml())
    again_cfg, again_table = read_preset(str(path))
    again = build_spec(str(path), again_cfg, again_table, Asked(), plan=lambda *_: plan_slots("cpu", 2, None, cores=2))
    assert (again.params, again.trials, again.parallel, again.metric) == (spec.params, 7, 2, "val_loss")
    assert again.study == spec.study  # the same space: the same default study (another machine joins it)
    assert load_preset(str(path)).optimizer.lr == cfg.optimizer.lr  # a preset file to `train` too
    assert SweepSpec.from_json(spec.to_json()) == spec
    path.write_text(spec.to_toml().replace("[sweep]\n", "[sweep]\ntrails = 3\n"))
    with pytest.raises(ConfigError, match=r"unknown key sweep.trails \(did you mean 'trials'\?\)"):
        read_preset(str(path))


def test_trials_get_a_gpu_each_or_a_share_of_the_cores():
    assert [s.env({})["CUDA_VISIBLE_DEVICES"] for s in plan_slots("auto", None, None, gpus=["0", "1"])] == ["0", "1"]
    shared = plan_slots("auto", 4, None, gpus=["0", "1"])  # 4 at once on 2 GPUs: 2 a GPU, spread GPU after GPU
    assert [s.gpu for s in shared] == ["0", "1", "0", "1"]
    assert [s.gpu for s in plan_slots("cuda", None, 3, gpus=["2"])] == ["2", "2", "2"]
    cpu = plan_slots("cpu", 2, None, gpus=["0"], cores=4)  # train.device = cpu keeps trials off the GPUs
    assert [(s.gpu, s.threads, s.describe()) for s in cpu] == [(None, 2, "CPU, 2 threads")] * 2  # the policy shares them
    assert "CUDA_VISIBLE_DEVICES" not in cpu[0].env({}) and "OMP_NUM_THREADS" not in cpu[0].env({})
    with pytest.raises(ConfigError, match=r"--parallel 3: this machine lets the sweep use 2 core\(s\)"):
        plan_slots("cpu", 3, None, cores=2)
    with pytest.raises(ConfigError, match=r"--parallel 5: 2 GPU\(s\) x 2 trial\(s\) per GPU make 4 slots"):
        plan_slots("auto", 5, 2, gpus=["0", "1"])


# ---------------------------------------------------------------------------
# bad input at the command line: one line, exit 2, nothing started


def _other_study(journal: Path) -> None:
    """A study named "shared" in a journal file, of another space than the command below asks for."""
    from tui_trainer.sweep.study import open_storage, open_study

    cfg, table = read_preset("spirals-mlp")
    spec = build_spec("spirals-mlp", cfg, table, Asked(params=["optimizer.lr=0.001..0.1"], storage=str(journal),
                                                       study="shared"), plan=lambda *_: plan_slots("cpu", 1, None))
    open_study(spec, open_storage(spec, None))


@pytest.mark.parametrize("args, said", [
    (["--param", "optimizer.lr=1e-4.."], "--param optimizer.lr=1e-4..: '' in '1e-4..' is not a number"),
    (["--param", "regularization.dropout=0..0.5"], "did you mean 'model.dropout'?"),
    (["--param", "optimizer.lr=log:1e-4..1e3"], "optimizer.lr = 1000.0: must be > 0 and <= 100"),
    (["--param", "optimizer.lr=log:1e-4..1e-1", "--storage", "postgresql://nobody@127.0.0.1:9/none"],
     "--storage postgresql://nobody@127.0.0.1:9/none: cannot reach it"),
    (["--param", "optimizer.lr=log:1e-4..1e-1", "--storage", "JOURNAL", "--study", "shared"],
     "study 'shared' exists with another search space (optimizer.lr=0.001..0.1)"),
    (["--param", "optimizer.lr=log:1e-4..1e-1", "--parallel", "64"], "--parallel 64: this machine lets the sweep use"),
    (["--param", "optimizer.lr=log:1e-4..1e-1", "--set", "optimizer.lr=0.1"], "given to both --set and --param"),
    (["--param", "optimizer.lr=log:1e-4..1e-1", "--prune", "medain"], "--prune 'medain': not allowed (did you mean "
                                                                        "'median'?)"),
    ([], "no --param given"),
])
def test_bad_input_is_one_line_exit_2_and_starts_nothing(tmp_path, args, said):
    if "JOURNAL" in args:
        _other_study(tmp_path / "shared.log")
        args = [str(tmp_path / "shared.log") if a == "JOURNAL" else a for a in args]
    if any(a.startswith("postgresql") for a in args):
        pytest.importorskip("psycopg", reason="the PostgreSQL driver: pip install '.[postgres]'")
    proc = cli("sweep", "spirals-mlp", *args, "--device", "cpu", "--sweeps-dir", str(tmp_path / "sweeps"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert said in proc.stderr
    assert not (tmp_path / "sweeps").exists()  # nothing started, nothing written


# ---------------------------------------------------------------------------
# real sweeps: every trial a run process


def _seed_drawing(spec: SweepSpec, key: str, wanted: list) -> int:
    """A sampler seed whose first draws of ``key`` are ``wanted``, found by asking an in-memory study with the
    sampler the sweep makes (Optuna's own random stream, whatever its version)."""
    from tui_trainer.sweep.study import config_values, distributions, make_sampler

    for seed in range(200):
        study = optuna.create_study(sampler=make_sampler(replace(spec, sampler_seed=seed)))
        draws = [config_values(spec, study.ask(distributions(spec)).params)[key] for _ in wanted]
        if draws == wanted:
            return seed
    raise AssertionError(f"no seed draws {wanted}")


@pytest.mark.slow
def test_a_sweep_prunes_through_the_trials_endpoint_and_its_best_trains_again_alike(tmp_path):
    """4 trials, 2 at a time, choosing lr 0.05 (learns) or 1e-5 (does not): seeded so trials 0 and 1 learn and 2
    and 3 start after one has finished. The median pruner stops 2 and 3 at epoch 1 through their endpoints: each
    keeps last.pt and says "pruned at epoch 1" in `runs`; 0 and 1 complete. The best, saved as a preset, trains
    again to the same loss."""
    cfg, _table = read_preset("spirals-mlp")
    spec = build_spec("spirals-mlp", cfg, {}, Asked(params=["optimizer.lr=choice:0.05|0.00001"]),
                      plan=lambda *_: plan_slots("cpu", 2, None, cores=2))
    seed = _seed_drawing(spec, "optimizer.lr", [0.05, 0.05, 1e-5, 1e-5])
    proc = cli("sweep", "spirals-mlp", "--param", "optimizer.lr=choice:0.05|0.00001", "--trials", "4", "--parallel",
               "2", "--epochs", "20", "--prune", "median", "--prune-startup", "1", "--sampler-seed", str(seed),
               "--save-best", "spirals-best", *TINY, "--set", "data.n_samples=2000",  # 50 steps an epoch: the stop
               "--sweeps-dir", str(tmp_path / "sweeps"))                              # lands before the 20th
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sweep = the_sweep(tmp_path / "sweeps")
    states = {t.number: (t.state.name, t.params["optimizer.lr"]) for t in study_of(sweep).get_trials()}
    assert states == {0: ("COMPLETE", 0.05), 1: ("COMPLETE", 0.05), 2: ("PRUNED", 1e-5), 3: ("PRUNED", 1e-5)}
    for number in (2, 3):
        run = run_of(sweep, number)
        status = run.read_status()
        assert run.last.is_file() and status["state"] == "stopped"
        assert status["message"].startswith("pruned at epoch 1; stopped ")
        assert int(status["epoch"]) < 20  # stopped early: the point of pruning
        assert f"trial {number} pruned after " in proc.stdout
    listing = cli("runs", "--runs-dir", str(sweep.trials))
    pruned_rows = [ln for ln in listing.stdout.splitlines() if "pruned at epoch 1" in ln]
    assert len(pruned_rows) == 2 and all("-t002" in r or "-t003" in r for r in pruned_rows), listing.stdout
    # the trials are ordinary runs to compare; the study is a CSV
    compared = cli("compare", str(run_of(sweep, 0).path), str(run_of(sweep, 2).path))
    assert compared.returncode == 0 and "lr=" in compared.stdout, compared.stderr
    exported = cli("export", str(sweep.path), "-o", str(tmp_path / "study.csv"))
    assert exported.returncode == 0, exported.stderr
    rows = (tmp_path / "study.csv").read_text().splitlines()
    assert rows[0].startswith("number,state,val_loss,optimizer.lr,epochs,reason")
    assert [r.split(",")[1] for r in rows[1:]] == ["complete", "complete", "pruned", "pruned"]
    # the best: printed, saved as a preset when the sweep ended, and trained again to the same result
    best = sweep.read_status()["best"]
    assert best["number"] in (0, 1) and f"best trial {best['number']}: val_loss" in proc.stdout
    assert "saved as preset spirals-best" in proc.stdout
    again = cli("train", "spirals-best", "--runs-dir", str(tmp_path / "again"),
                env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert again.returncode == 0, again.stderr
    rerun = RunDir(next((tmp_path / "again").iterdir()))
    assert rerun.read_status()["best"] == pytest.approx(best["value"], rel=1e-6)


def _epochs_seed(pattern: list[int]) -> tuple[str, str]:
    """--param and --sampler-seed making trial n train ``pattern[n]`` epochs: a long trial to kill or stop while it
    trains, short ones to finish the sweep soon."""
    param = "train.epochs=choice:" + "|".join(str(e) for e in sorted(set(pattern), reverse=True))
    cfg, _table = read_preset("spirals-mlp")
    spec = build_spec("spirals-mlp", cfg, {}, Asked(params=[param]), plan=lambda *_: plan_slots("cpu", 1, None))
    return param, str(_seed_drawing(spec, "train.epochs", pattern))


@pytest.mark.slow
def test_a_killed_trial_is_recorded_failed_and_the_sweep_goes_on(tmp_path):
    """Trial 0's run process killed with -9: the study records it failed with the run's crash, and trials 1 and 2
    run and complete."""
    sweeps = tmp_path / "sweeps"
    param, seed = _epochs_seed([300, 3, 3])
    proc = subprocess.Popen([sys.executable, "-m", "tui_trainer", "sweep", "spirals-mlp", "--param", param,
                             "--sampler-seed", seed, "--trials", "3", "--parallel", "1", "--prune", "none", *TINY,
                             "--sweeps-dir", str(sweeps)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sweep = wait_for(lambda: list_sweeps(sweeps) and list_sweeps(sweeps)[0], what="the sweep's folder")
        wait_for(lambda: running(sweep, {0}) and run_of(sweep, 0).read_status().get("state") == "running",
                 what="trial 0 training")
        os.kill(int(run_of(sweep, 0).read_status()["pid"]), signal.SIGKILL)
        out, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, out + err
    trials = {t.number: t for t in study_of(sweep).get_trials()}
    assert [trials[n].state.name for n in range(3)] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert "crashed: its process is gone without an end" in trials[0].user_attrs["reason"]
    assert "trial 0 failed: run " in out and "finished: 2 complete, 1 failed" in out


@pytest.mark.slow
def test_the_sweep_killed_then_resumed_loses_nothing_and_counts_no_trial_twice(tmp_path):
    """kill -9 of the sweep process while trials 0 and 1 train (they are processes of their own: they go on), then
    kill -9 of trial 1 as well (crashed, with a last.pt). The resumed sweep follows trial 0 again, resumes trial 1
    from its last.pt in its own folder, runs trial 2: three trials, three folders, every epoch once."""
    sweeps = tmp_path / "sweeps"
    param, seed = _epochs_seed([150, 150, 3])
    started = cli("sweep", "spirals-mlp", "--param", param, "--sampler-seed", seed, "--trials", "3", "--parallel",
                  "2", "--prune", "none", *TINY, "--sweeps-dir", str(sweeps), "--detach")
    assert started.returncode == 0, started.stderr
    sweep = the_sweep(sweeps)
    wait_for(lambda: running(sweep, {0, 1}) and run_of(sweep, 1).last.is_file(), what="trials 0 and 1 with a last.pt")
    os.kill(int(sweep.read_status()["pid"]), signal.SIGKILL)
    wait_for(lambda: sweep.state() == "crashed", what="the sweep reading crashed")
    trial_1 = run_of(sweep, 1)
    os.kill(int(trial_1.read_status()["pid"]), signal.SIGKILL)
    wait_for(lambda: trial_1.state() == "crashed", what="trial 1 reading crashed")
    assert cli("sweeps", "--sweeps-dir", str(sweeps)).stdout.splitlines()[1].split()[2] == "crashed"

    resumed = cli("resume", str(sweep.path))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    trials = study_of(sweep).get_trials()
    assert sorted((t.number, t.state.name) for t in trials) == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
    assert "resumed from last.pt at epoch" in trial_events(sweep, 1)[-2]["how"]
    assert len({t.user_attrs["run_dir"] for t in trials}) == 3 and len(list(sweep.trials.iterdir())) == 3
    for t in trials:
        epochs = [row["epoch"] for row in RunDir(t.user_attrs["run_dir"]).read_metrics()]
        assert epochs == list(range(1, t.params["train.epochs"] + 1)), (t.number, epochs)  # every epoch once
        finished = [e for e in trial_events(sweep, t.number) if e["state"] in ("complete", "pruned", "failed")]
        assert len(finished) == 1  # told once


@pytest.mark.slow
def test_stop_sweep_saves_every_trial_and_resume_goes_on_and_one_folder_has_one_sweep_process(tmp_path):
    """While the sweep runs, a second sweep process on its folder and a resume both refuse (exit 2, nothing
    written). `stop SWEEP` stops both trials (each last.pt, "stopped with its sweep"); `resume` finishes them from
    there, in their own folders."""
    sweeps = tmp_path / "sweeps"
    started = cli("sweep", "spirals-mlp", "--param", "optimizer.lr=log:0.001..0.01", "--trials", "2", "--parallel",
                  "2", "--epochs", "150", "--prune", "none", *TINY, "--sweeps-dir", str(sweeps), "--detach")
    assert started.returncode == 0, started.stderr
    sweep = the_sweep(sweeps)
    wait_for(lambda: running(sweep, {0, 1}) and all(run_of(sweep, n).last.is_file() for n in (0, 1)),
             what="both trials with a last.pt")
    before = sweep.events_path.read_bytes()
    second = subprocess.run([sys.executable, "-m", "tui_trainer.sweep", str(sweep.path)], capture_output=True,
                            text=True, timeout=60)
    assert second.returncode == 2 and "already driven by process" in second.stderr
    again = cli("resume", str(sweep.path))
    assert again.returncode == 2 and "is running: it is already going" in again.stderr
    assert sweep.events_path.read_bytes()[:len(before)] == before and sweep.state() == "running"

    stopped = cli("stop", str(sweep.path))
    assert stopped.returncode == 0, stopped.stderr
    assert sweep.state() == "stopped" and "2 trial(s) interrupted" in stopped.stdout
    for number in (0, 1):
        status = run_of(sweep, number).read_status()
        assert status["state"] == "stopped" and status["message"].startswith("stopped with its sweep; stopped ")
        assert run_of(sweep, number).last.is_file()
    assert {t.state.name for t in study_of(sweep).get_trials()} == {"RUNNING"}  # interrupted: resumable

    resumed = cli("resume", str(sweep.path))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert {t.state.name for t in study_of(sweep).get_trials()} == {"COMPLETE"}
    assert resumed.stdout.count("(resumed from last.pt at epoch") == 2
    assert len(list(sweep.trials.iterdir())) == 2
    for number in (0, 1):
        assert [r["epoch"] for r in run_of(sweep, number).read_metrics()] == list(range(1, 151))


@pytest.mark.slow
def test_a_dropped_terminal_leaves_the_sweep_running_and_attach_follows_it_to_its_end(tmp_path):
    """The foreground `sweep` gets SIGHUP (its terminal closed) while a trial trains: it ends, the sweep process
    (a session of its own) does not; `attach SWEEP` then follows it to the end."""
    sweeps = tmp_path / "sweeps"
    param, seed = _epochs_seed([100, 3])
    front = subprocess.Popen([sys.executable, "-m", "tui_trainer", "sweep", "spirals-mlp", "--param", param,
                              "--sampler-seed", seed, "--trials", "2", "--parallel", "1", "--prune", "none", *TINY,
                              "--sweeps-dir", str(sweeps)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sweep = wait_for(lambda: list_sweeps(sweeps) and list_sweeps(sweeps)[0], what="the sweep's folder")
        wait_for(lambda: running(sweep, {0}), what="trial 0 training")
        front.send_signal(signal.SIGHUP)
        assert front.wait(30) == -signal.SIGHUP
    finally:
        front.kill()
    assert sweep.state() == "running"
    followed = cli("attach", str(sweep.path))
    assert followed.returncode == 0, followed.stderr
    assert "trial 0 complete" in followed.stdout and "finished: 2 complete" in followed.stdout
    assert sweep.state() == "finished"


def test_a_journal_line_torn_by_a_kill_is_cut_before_the_sweep_goes_on(tmp_path):
    from tui_trainer.sweep.process import repair_journal

    journal = tmp_path / "journal.log"
    journal.write_bytes(b'{"op_code": 0}\n{"op_code": 4, "stu')
    assert repair_journal(journal) and journal.read_bytes() == b'{"op_code": 0}\n'
    assert not repair_journal(journal) and not repair_journal(tmp_path / "missing.log")


def test_the_sweep_imports_neither_torch_nor_a_front_end():
    """The sweep process holds no model: torch is imported by its trials' run processes only."""
    code = ("import sys, pkgutil, importlib, tui_trainer.sweep as s\n"
            "for m in pkgutil.walk_packages(s.__path__, 'tui_trainer.sweep.'):\n"
            "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
            "import tui_trainer.sweep.study as st; st.optuna_module()\n"
            "print([m for m in ('torch', 'textual', 'typer') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# ---------------------------------------------------------------------------
# several machines: two workers sharing one study in a real PostgreSQL


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


@pytest.fixture
def postgres():
    """A PostgreSQL server of its own in a temporary folder, on a free localhost port: its URL. As root, the
    server runs as the postgres user (it refuses root)."""
    pytest.importorskip("psycopg", reason="the PostgreSQL driver: pip install '.[postgres]'")
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server here (Debian: apt-get install postgresql; .ci/run installs it)")
    import tempfile

    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: PostgreSQL will not run as root")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run the server as")
        as_user = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="tt-pg-", dir="/tmp"))  # pytest's tmp_path is 0700 root: not theirs
    if as_user:
        shutil.chown(folder, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = folder / "data"
    run = lambda *cmd: subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)  # noqa: E731
    made = run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "tt", "--no-sync", "-E", "UTF8")
    if made.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"initdb failed here: {made.stderr.strip()[:200]}")
    up = run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
             f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        assert up.returncode == 0, up.stderr + (folder / "log").read_text()
        created = run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "tt", "sweeps")
        assert created.returncode == 0, created.stderr
        yield f"postgresql://tt@127.0.0.1:{port}/sweeps"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_sharing_a_postgresql_study_finish_its_trials_between_them(tmp_path, postgres):
    """The same sweep command twice at once (as on two machines, each with its own sweeps folder), sharing a study
    in PostgreSQL: the study ends with its 6 trials, each run by exactly one worker, and both took part."""
    command = ["sweep", "spirals-mlp", "--param", "optimizer.lr=log:0.001..0.05", "--trials", "6", "--parallel", "1",
               "--epochs", "4", "--prune", "median", "--storage", postgres, *TINY]
    workers = [subprocess.Popen([sys.executable, "-m", "tui_trainer", *command, "--sweeps-dir",
                                 str(tmp_path / f"machine{i}")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for i in (1, 2)]
    try:
        outs = [w.communicate(timeout=280) for w in workers]
    finally:
        for w in workers:
            w.kill()
    assert [w.returncode for w in workers] == [0, 0], outs
    sweeps = [the_sweep(tmp_path / f"machine{i}") for i in (1, 2)]
    spec = read_spec(sweeps[0].spec_path)
    assert read_spec(sweeps[1].spec_path).study == spec.study  # the same command: the same study
    study = optuna.load_study(study_name=spec.study, storage=postgres)
    counted = [t for t in study.get_trials() if t.number < 6]
    assert sorted(t.number for t in counted) == list(range(6))
    assert {t.state.name for t in counted} <= {"COMPLETE", "PRUNED"}
    surplus = [t for t in study.get_trials() if t.number >= 6]
    assert all(t.state.name == "FAIL" and "surplus" in t.user_attrs["reason"] for t in surplus)
    folders = [p for s in sweeps for p in s.trials.iterdir()]
    assert len(folders) == 6 and {str(p) for p in folders} == {t.user_attrs["run_dir"] for t in counted}
    assert all(list(s.trials.iterdir()) for s in sweeps)  # both workers ran trials
    by_worker = [{t.number for t in counted if t.user_attrs["sweep"]["id"] == read_spec(s.spec_path).id}
                 for s in sweeps]
    assert not by_worker[0] & by_worker[1] and by_worker[0] | by_worker[1] == set(range(6))


def test_a_sweep_of_your_own_code_finds_its_files_beside_the_preset(tmp_path, monkeypatch):
    """A preset naming a factory file reads it relative to the preset's folder, in a sweep as in train."""
    from tui_trainer.sweep.space import parse_params
    from tui_trainer.sweep.spec import read_preset

    examples = Path(__file__).resolve().parent.parent / "examples"
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("custom.toml", "my_cnn.py", "npy_data.py"):
        shutil.copy(examples / name, folder / name)
    (folder / "custom.toml").write_text((folder / "custom.toml").read_text() + '\n[sweep]\ntrials = 2\n\n[sweep.params]\n'
                                        'optimizer.lr = "log:1e-4..1e-2"\n')
    monkeypatch.chdir(tmp_path)  # not the preset's folder
    cfg, table = read_preset(str(folder / "custom.toml"))
    assert table["trials"] == 2 and [p.text() for p in parse_params([], table["params"])] == ["log:0.0001..0.01"]
    assert cfg.model.factory == f"{folder / 'my_cnn.py'}:build" and cfg.data.factory == f"{folder / 'npy_data.py'}:build"
