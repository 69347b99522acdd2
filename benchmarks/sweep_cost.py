"""What a sweep trial costs beyond its training, and what the median pruner saves, on this machine.

Two sweeps of the same space, the same sampler seed and the same trials, run as a user runs them (``tui-trainer
sweep ... --parallel 2``): one with ``--prune none``, one with ``--prune median``. Then the best trial of the unpruned
sweep is trained again with ``--seeds`` seeds, for the spread a single run of the best config has anyway.

Per trial, from the sweep's events.jsonl and the trial's status.json:

* start-up: the run process from its folder's creation to its own first status write (the interpreter, torch and
  the package imported);
* set-up and end: the rest of the run process's life that is not its training clock (data, model, the last
  checkpoint and events);
* sweep: from the run's end to the study told and the end written (the follower's polling, Optuna's tell);
* study round trips, measured apart on a journal file like a sweep's: ``ask``, ``report`` + ``should_prune`` (one an
  epoch) and ``tell``.

And per sweep: the epochs trained (a pruned trial's included, as far as it got), the wall time, and the best metric,
against the seed spread of the best config.

    python benchmarks/sweep_cost.py                  # 20 trials, --parallel 2, spirals-mlp, 5 seeds of the best
    python benchmarks/sweep_cost.py --quick --json   # that it runs (a minute)

Results in benchmarks/RESULTS.md ("Sweeps").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# not this folder: its concurrent.py would stand in for the stdlib's concurrent package (Optuna imports
# concurrent.futures)
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

from tui_trainer.run.folder import RunDir  # noqa: E402
from tui_trainer.sweep.events import read_events  # noqa: E402
from tui_trainer.sweep.folder import list_sweeps  # noqa: E402

SPACE = ["optimizer.lr=log:1e-4..1e-1", "model.hidden=choice:[16]|[64,64]|[256,256]", "model.dropout=0..0.5"]


def sweep(prune: str, args: argparse.Namespace, scratch: Path) -> dict:
    """One sweep through the command line; its numbers."""
    folder = scratch / f"sweeps-{prune}"
    cmd = [sys.executable, "-m", "tui_trainer", "sweep", args.preset, *[a for p in SPACE for a in ("--param", p)],
           "--trials", str(args.trials), "--parallel", str(args.parallel), "--prune", prune, "--sampler-seed",
           str(args.sampler_seed), "--device", "cpu", "--sweeps-dir", str(folder), *args.extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=scratch)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"the {prune} sweep failed:\n{proc.stdout}\n{proc.stderr}")
    found = list_sweeps(folder)[0]
    events = read_events(found.events_path)[0]
    started = {e["number"]: e for e in events if e.get("event") == "trial" and e.get("state") == "running"}
    ended = {e["number"]: e for e in events if e.get("event") == "trial" and e.get("state") in ("complete", "pruned",
                                                                                              "failed")}
    rows = []
    for number, end in sorted(ended.items()):
        status = RunDir(started[number]["run"]).read_status()
        life = status["ended"] - status["started"]
        rows.append({"number": number, "state": end["state"], "value": end.get("value"), "epochs": status["epoch"],
                     "startup_s": status["started"] - status["created"], "training_s": status["elapsed_s"],
                     "setup_end_s": life - status["elapsed_s"], "sweep_s": end["t"] - status["ended"]})
    best = min((r for r in rows if r["state"] == "complete"), key=lambda r: r["value"])
    return {"prune": prune, "wall_s": wall, "trials": rows, "epochs": sum(r["epochs"] for r in rows),
            "best": best["value"], "best_number": best["number"],
            "best_config": str(Path(started[best["number"]]["run"]) / "config.toml"),
            "states": {s: sum(r["state"] == s for r in rows) for s in ("complete", "pruned", "failed")}}


def round_trips(trials: int, epochs: int, scratch: Path) -> dict:
    """Optuna's calls as a sweep makes them, on a journal file: seconds per call (median)."""
    import optuna

    from tui_trainer.config import load_preset
    from tui_trainer.sweep.space import parse_params
    from tui_trainer.sweep.spec import SweepSpec
    from tui_trainer.sweep.study import distributions, make_pruner, make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = SweepSpec(preset="spirals-mlp", config=load_preset("spirals-mlp").to_dict(), params=parse_params(SPACE),
                     prune="median", prune_startup=1)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(scratch / "rt.log")))
    study = optuna.create_study(storage=storage, sampler=make_sampler(spec), pruner=make_pruner(spec))
    dists = distributions(spec)
    ask, report, tell = [], [], []
    for n in range(trials):
        t0 = time.perf_counter()
        trial = study.ask(dists)
        ask.append(time.perf_counter() - t0)
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            trial.report(1.0 / (epoch + n), epoch)
            trial.should_prune()
            report.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        study.tell(trial, 1.0 / (epochs + n))
        tell.append(time.perf_counter() - t0)
    return {"ask_s": statistics.median(ask), "report_s": statistics.median(report), "tell_s": statistics.median(tell)}


def seed_spread(config: str, seeds: int, scratch: Path) -> list[float]:
    """The best trial's config trained with ``seeds`` seeds (one thread each, as in the sweep): best val_loss each."""
    values = []
    for seed in range(seeds):
        runs = scratch / f"seed-{seed}"
        proc = subprocess.run([sys.executable, "-m", "tui_trainer", "train", config, "--seed", str(seed), "--runs-dir",
                               str(runs)], capture_output=True, text=True, cwd=scratch,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        if proc.returncode != 0:
            raise SystemExit(f"seed {seed} failed:\n{proc.stderr}")
        values.append(RunDir(next(runs.iterdir())).read_status()["best"])
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="spirals-mlp")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--sampler-seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="4 trials of 3 epochs on 400 samples, 2 seeds")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args()
    args.extra = []
    if args.quick:
        args.trials, args.seeds = 4, 2
        args.extra = ["--epochs", "3", "--set", "data.n_samples=400"]
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="sweep-cost-") as tmp:
        scratch = Path(tmp)
        env_home = scratch / "home"
        os.environ["TUI_TRAINER_HOME"] = str(env_home)
        results = [sweep(prune, args, scratch) for prune in ("none", "median")]
        trips = round_trips(args.trials, 15 if not args.quick else 3, scratch)
        spread = seed_spread(results[0]["best_config"], args.seeds, scratch)
    out = {"sweeps": results, "round_trips": trips, "seeds": spread, "load_before": load,
           "load_after": os.getloadavg()[0]}
    if args.json:
        print(json.dumps(out))
        return
    print(f"load average {load:.1f} before, {out['load_after']:.1f} after")
    for r in results:
        trials = r["trials"]
        med = {k: statistics.median(t[k] for t in trials) for k in ("startup_s", "setup_end_s", "sweep_s", "training_s")}
        print(f"--prune {r['prune']}: {r['wall_s']:.1f} s, {r['epochs']} epochs, {r['states']}, best val_loss "
              f"{r['best']:.4f} (trial {r['best_number']}); per trial (median): start-up {med['startup_s']:.2f} s, "
              f"set-up and end {med['setup_end_s']:.2f} s, sweep {med['sweep_s']:.2f} s, training "
              f"{med['training_s']:.2f} s")
    print(f"study round trips (median): ask {trips['ask_s'] * 1e3:.1f} ms, report + should_prune "
          f"{trips['report_s'] * 1e3:.1f} ms, tell {trips['tell_s'] * 1e3:.1f} ms")
    print(f"the best config over {args.seeds} seeds: best val_loss {', '.join(f'{v:.4f}' for v in spread)} "
          f"(spread {min(spread):.4f}..{max(spread):.4f})")


if __name__ == "__main__":
    main()
