"""The command line: exit codes, one-line errors, plain output to pipes, resume, evaluate, signals."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tui_trainer.cli import main
from tui_trainer.config import list_presets, load_preset
from tui_trainer.run.formats import format_number


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the installed entry point as a user would (stdout is a pipe, not a terminal)."""
    return subprocess.run([sys.executable, "-m", "tui_trainer.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_train_plain_lines_when_piped_and_exit_zero(tmp_path):
    t0 = time.time()
    proc = cli("train", "moons-mlp", "--epochs", "3", "--runs-dir", str(tmp_path / "r"), "--set", "data.n_samples=300")
    waited = time.time() - t0
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    # where the seconds before the first step went, from this process's start (it began after t0, ended before now)
    said = [ln for ln in lines if ln.startswith("first step ")]
    assert len(said) == 1, proc.stdout
    head, phases = said[0].removesuffix(" (seconds)").split(": ", 1)
    named = [(p.rsplit(" ", 1)[0], float(p.rsplit(" ", 1)[1])) for p in phases.split(", ")]
    assert [n for n, _ in named] == ["start-up", "device", "data", "model", "first step"]
    total = float(head.split()[2])
    assert head == f"first step {total:.2f} s after start" and 0 < total < waited
    assert sum(s for _, s in named) == pytest.approx(total, abs=0.03) and named[0][1] > 0.1  # the imports take time
    assert [ln.split()[1] for ln in lines if ln.startswith("epoch ")] == ["1/3", "2/3", "3/3"]
    assert "\r" not in proc.stdout and "\x1b" not in proc.stdout
    assert lines[-1].startswith("done: completed 3 epochs")


@pytest.mark.parametrize(("args", "needle"), [
    (["train", "nope"], "unknown preset 'nope'"),
    (["train", "spirals-mlp", "--set", "optimizer.lr=-1"], "optimizer.lr = -1.0: must be > 0"),
    (["train", "spirals-mlp", "--set", "optimizer.lrr=1"], "did you mean 'lr'"),
    (["train", "spirals-mlp", "--set", "lr"], "expected section.key=value"),
    (["train", "spirals-mlp", "--set", "model.dropout=1.5"], "model.dropout = 1.5: must be >= 0 and < 1"),
    (["train", "spirals-mlp", "--set", "data.batch_size=0"], "data.batch_size = 0: must be >= 1"),
    (["train", "spirals-mlp", "--device", "tpu"], "train.device = 'tpu': not allowed"),
    (["train", "spirals-mlp", "--epochs", "zero"], "Invalid value for '--epochs'"),
    (["train"], "Missing argument 'preset'. (see: tui-trainer train --help)"),
    (["trian"], "No such command 'trian'"),
    (["resume", "missing.pt"], "checkpoint not found: missing.pt"),
    (["evaluate", "missing.pt"], "checkpoint not found"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, args, needle):
    code, out, err = run_main(capsys, *args)
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert "Traceback" not in err + out


def test_bad_input_in_a_real_process_has_no_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[optimizer]\nname = 'adamm'\n")
    proc = cli("train", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: {bad}: optimizer.name = 'adamm': not allowed (did you mean 'adam'?); "
                                   "allowed: sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw, adamax")


def test_unwritable_runs_dir_is_exit_2_before_training(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out, err = run_main(capsys, "train", "spirals-mlp", "--runs-dir", str(blocker / "runs"))
    assert code == 2 and "is not writable" in err and "epoch" not in out


@pytest.fixture
def offline_image_data(monkeypatch, tmp_path):
    """torchvision datasets as random tensors of the real shapes (their loading is tested in test_data_real)."""
    import torch

    from tests.test_data_real import make_image_folder
    from tui_trainer.data import real

    def tensors(name, root, train):
        c, h, w = real.TORCHVISION[name][2]
        n = 256 if train else 64
        return torch.randint(0, 255, (n, c, h, w), dtype=torch.uint8), torch.arange(n) % 10

    monkeypatch.setattr(real, "ensure_dataset", lambda name, root: root)
    monkeypatch.setattr(real, "_tensors", tensors)
    return make_image_folder(tmp_path / "images", per_class=4)


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(list_presets()))
def test_every_preset_runs_one_step(capsys, tmp_path, preset, offline_image_data):
    extra = []
    if load_preset(preset).data.dataset == "imagefolder":
        extra = ["--set", f'data.root="{offline_image_data}"', "--set", "model.pretrained=false",
                 "--set", "data.batch_size=4"]
    code, out, err = run_main(capsys, "train", preset, "--dry-run", "--runs-dir", str(tmp_path / "r"), *extra)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == f"dry run: one step of {preset} trained; nothing kept"
    assert not (tmp_path / "r").exists()  # a dry run leaves no run directory behind


def test_resume_continues_in_the_same_run_directory_and_evaluate_reports(capsys, tmp_path):
    runs = tmp_path / "r"
    code, out, _ = run_main(capsys, "train", "moons-mlp", "--epochs", "2", "--runs-dir", str(runs),
                            "--set", "data.n_samples=200")
    assert code == 0
    run_dir = next(runs.iterdir())
    last = run_dir / "checkpoints" / "last.pt"
    code, out, err = run_main(capsys, "resume", str(last))
    assert code == 2 and "pass --epochs N with N > 2" in err
    code, out, _ = run_main(capsys, "resume", str(last), "--epochs", "4")
    assert code == 0 and "resuming moons-mlp" in out and "epoch 3/4" in out
    rows = [json.loads(r) for r in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert list(runs.iterdir()) == [run_dir]
    code, out, _ = run_main(capsys, "evaluate", str(last))
    assert code == 0
    assert (f"epoch 4 step {rows[-1]['step']} val_loss {format_number(rows[-1]['val_loss'])} "
            f"val_acc {format_number(rows[-1]['val_acc'])}") in out
    assert "confusion matrix" in out


def test_presets_devices_summary(capsys):
    code, out, _ = run_main(capsys, "presets")
    assert code == 0 and [ln.split()[0] for ln in out.splitlines()] == sorted(list_presets())
    assert all(len(line.split(None, 1)) == 2 for line in out.splitlines())
    code, out, _ = run_main(capsys, "devices")
    assert code == 0 and out.startswith("cpu:") and "auto picks:" in out
    code, out, _ = run_main(capsys, "summary", "spirals-mlp")
    assert code == 0 and "total params: 4,482" in out


def test_doctor_tells_a_cpu_only_torch_from_a_cuda_build_that_sees_no_gpu(tmp_path):
    """On a machine without a GPU the fix depends on the installed torch: a CPU-only build needs a
    CUDA build; a CUDA build (this machine's torch 2.14.1+cu130) needs the driver or the environment."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: doctor reports its memory instead")
    proc = cli("doctor", "--runs-dir", str(tmp_path / "runs"))
    line = next(ln for ln in proc.stdout.splitlines() if "no GPU found" in ln)
    if torch.version.cuda:
        assert f"torch is a CUDA {torch.version.cuda} build but sees no GPU" in line
        assert "nvidia-smi" in line and "CUDA_VISIBLE_DEVICES" in line
        assert "install a CUDA build" not in line
    else:
        assert "this torch is a CPU-only build: for CUDA install a CUDA build of torch" in line


def test_help_does_not_import_torch():
    code = ("import sys; sys.argv = ['tui-trainer', '--help']\n"
            "from tui_trainer.cli import main\n"
            "try: main()\nexcept SystemExit: pass\n"
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip().splitlines()[-1] == "False", proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_within_a_step_saves_and_exits_130(tmp_path, sig):
    runs = tmp_path / "r"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "tui_trainer.cli", "train", "spirals-mlp", "--epochs", "1000",
                             "--runs-dir", str(runs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    line = proc.stdout.readline()
    while not line.startswith("epoch 1/"):
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert re.search(r"^interrupted: stopped (in epoch \d+ \(\d+ complete\)|after epoch \d+), step \d+; saved ", out,
                     re.MULTILINE), out
    assert "resume with: tui-trainer resume" in out
    assert "Traceback" not in err
    from tui_trainer.engine.checkpoint import load_checkpoint

    last = Path(out.split("resume with: tui-trainer resume ")[1].strip())
    ck = load_checkpoint(last)
    assert ck["epoch"] >= 1 and ck["step"] > 0


def test_second_interrupt_exits_at_once(tmp_path):
    # after the first signal the run would stop politely; a second one must end the process at once
    script = (
        "import time\n"
        "from tui_trainer.cli.ways import install_stop_signals\n"
        "from tui_trainer.run.controls import Controls\n"
        "c = Controls(); install_stop_signals(c)\n"
        "print('ready', flush=True)\n"
        "while not c.stop_requested: time.sleep(0.01)\n"
        "print('stop requested', flush=True)\n"
        "while True: time.sleep(0.05)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    assert proc.stdout.readline().strip() == "stop requested"  # the first signal asked for a stop, no exit
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=5) == 130


# ---------------------------------------------------------------------------
# tui-trainer runs: one number format, the terminal's width, bad folders


def fake_runs(folder: Path) -> list[str]:
    """Three finished runs as their status.json says (no training): long names, a loss of 4.19e-05."""
    names = []
    for i, (preset, best, monitor) in enumerate([("lecture6-fashion-mnist-batchnorm-dropout", 4.19e-05, "val_loss"),
                                                 ("regression-toy", 0.31, "val_loss"),
                                                 ("spirals-mlp", 0.9875, "val_acc")]):
        name = f"20261204-1200{i:02d}-{preset}"
        run = folder / name
        run.mkdir(parents=True)
        (run / "status.json").write_text(json.dumps({
            "state": "finished", "preset": preset, "epochs": 400, "epoch": 400, "best": best, "monitor": monitor,
            "started": 1.8e9 + i, "ended": 1.8e9 + i + 65, "elapsed_s": 65.0}))
        names.append(name)
    return names


def test_runs_in_a_pipe_prints_every_column_with_one_number_format(capsys, tmp_path):
    names = fake_runs(tmp_path / "runs")
    code, out, err = run_main(capsys, "runs", "--runs-dir", str(tmp_path / "runs"))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["run", "preset", "state", "epoch", "best", "started", "elapsed"]
    bests = {ln.split()[0]: ln.split()[4:6] for ln in lines[1:]}
    assert bests[names[0]] == ["val_loss", "4.190e-05"]  # never 0.00 or 4.19; the column is scientific for all
    assert bests[names[1]] == ["val_loss", "3.100e-01"] and bests[names[2]] == ["val_acc", "9.875e-01"]
    assert len({len(ln) for ln in lines}) == 1  # every row as wide as the header: the columns line up


def read_pty(args: list[str], columns: int = 100, stderr_too: bool = False) -> tuple[int, str]:
    """Run the CLI with its stdout (and stderr) on a pseudo-terminal COLUMNS wide; (exit code, what it printed)."""
    import pty

    master, slave = pty.openpty()
    env = dict(os.environ, COLUMNS=str(columns))
    proc = subprocess.Popen([sys.executable, "-m", "tui_trainer.cli", *args], stdout=slave,
                            stderr=slave if stderr_too else subprocess.PIPE, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(30), b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.mark.parametrize("columns", [80, 120])
def test_runs_on_a_terminal_fits_its_width_by_leaving_out_whole_columns(tmp_path, columns):
    names = fake_runs(tmp_path / "runs")
    code, out = read_pty(["runs", "--runs-dir", str(tmp_path / "runs")], columns)
    assert code == 0, out
    lines = out.splitlines()
    assert all(len(ln) <= columns for ln in lines), lines
    # the full table is 161 wide: preset goes first, then started (120); at 80 elapsed and best too
    expected = {80: ["run", "state", "epoch"], 120: ["run", "state", "epoch", "best", "elapsed"]}[columns]
    assert lines[0].split() == expected
    assert [ln.split()[0] for ln in lines[1:]] == names[::-1]  # names whole (newest first)
    assert ("4.190e-05" in out) == (columns == 120)


@pytest.mark.parametrize("kind", ["file", "unreadable"])
def test_runs_dir_that_is_a_file_or_unreadable_is_one_line_exit_2(capsys, tmp_path, monkeypatch, kind):
    target = tmp_path / "runs"
    if kind == "file":
        target.write_text("not a folder")
    else:  # a folder this user may not list (chmod 0 does not stop root, who runs these tests in CI)
        fake_runs(target)
        original = Path.iterdir

        def refuse(self):
            if self == target:
                raise PermissionError(13, "Permission denied", str(self))
            return original(self)

        monkeypatch.setattr(Path, "iterdir", refuse)
    code, out, err = run_main(capsys, "runs", "--runs-dir", str(target))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.strip() == (f"error: --runs-dir {target} is a file; allowed: a folder of runs (default: runs)"
                           if kind == "file" else
                           f"error: --runs-dir {target} cannot be read (Permission denied); allowed: a readable folder "
                           "of runs")
    code, out, _ = run_main(capsys, "runs", "--runs-dir", str(tmp_path / "missing"))
    assert code == 0 and out.strip() == f"no runs in {tmp_path / 'missing'}"


def test_evaluate_or_resume_on_a_folder_suggests_a_checkpoint_that_exists(capsys, tmp_path):
    runs = tmp_path / "runs"
    old, new = fake_runs(runs)[:2]
    (runs / new / "checkpoints").mkdir()
    (runs / new / "checkpoints" / "best.pt").write_bytes(b"x")  # no last.pt: best.pt is the one to name
    (runs / old / "checkpoints").mkdir()
    (runs / old / "checkpoints" / "last.pt").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    cases = {
        runs: f"{runs} is a folder of runs; give a checkpoint file, e.g. the newest run's {runs / new}/checkpoints/best.pt",
        runs / new: f"{runs / new} is a folder; give a checkpoint file, e.g. {runs / new}/checkpoints/best.pt",
        runs / old / "checkpoints": f"{runs / old}/checkpoints is a folder; give a checkpoint file, e.g. "
                                    f"{runs / old}/checkpoints/last.pt",
        tmp_path / "empty": f"{tmp_path / 'empty'} is a folder; give a checkpoint file (.pt), e.g. "
                            "runs/<run>/checkpoints/last.pt",
    }
    for folder, said in cases.items():
        for command in ("evaluate", "resume"):
            code, out, err = run_main(capsys, command, str(folder))
            assert code == 2 and out == "" and err == f"error: {said}\n", (command, err)


# ---------------------------------------------------------------------------
# nothing silent on a terminal: a spinner on stderr, nothing in a pipe; lr-find's progress for a program


@pytest.mark.slow
def test_summary_on_a_terminal_shows_a_spinner_and_clears_it_and_a_pipe_gets_none():
    code, out = read_pty(["summary", "spirals-mlp"], stderr_too=True)
    assert code == 0
    assert "loading torch…" in out and "\r\x1b[2K" in out  # shown while torch loads (seconds), then cleared
    after = out.rsplit("\r\x1b[2K", 1)[1]
    assert after.lstrip().startswith("layer ") and "total params: 4,482" in after  # the table after a clean line
    proc = cli("summary", "spirals-mlp")
    assert proc.returncode == 0 and proc.stderr == "" and "\x1b" not in proc.stdout


@pytest.mark.slow
def test_lr_find_progress_is_json_lines_on_stderr_and_the_result_one_object_on_stdout():
    proc = cli("lr-find", "moons-mlp", "--json", "--progress", "--set", "data.n_samples=300")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    lines = [json.loads(line) for line in proc.stderr.splitlines()]
    assert lines and all(line["progress"] == "lr-find" for line in lines)
    assert set(lines[0]) == {"progress", "sweep", "max_sweeps", "step", "steps", "lr", "loss", "steps_done",
                             "elapsed_s"}
    assert (lines[0]["sweep"], lines[0]["step"], lines[0]["steps"], lines[0]["max_sweeps"]) == (1, 1, 100, 4)
    assert lines[0]["lr"] == pytest.approx(1e-7) and lines[0]["steps_done"] == 1
    starts = [line for line in lines if line["step"] == 1]
    assert [line["sweep"] for line in starts] == list(range(1, result["sweeps"] + 1))  # every sweep's start is said
    assert [line["steps_done"] for line in lines] == sorted(line["steps_done"] for line in lines)


def test_presets_marks_those_whose_data_is_not_here_without_importing_torch(tmp_path):
    def marks() -> dict[str, str]:
        code = ("import sys; sys.argv = ['tui-trainer', 'presets']\n"
                "from tui_trainer.cli import main\n"
                "try: main()\nexcept SystemExit: pass\n"
                "print('torch' in sys.modules)")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
        *lines, imported = proc.stdout.splitlines()
        assert imported == "False", proc.stderr  # a listing, not a training: no torch
        found = {}
        for line in lines:
            name, rest = line.split(None, 1)
            found[name] = rest[: rest.index("]") + 1] if rest.startswith("[") else ""
        return found

    before = marks()
    assert before["mnist-mlp"] == "[download]" and before["cifar10-cnn"] == "[download]"  # not in the test's cache
    assert before["imagefolder-cnn"] == "[no data]" and before["spirals-mlp"] == ""
    cache = Path(os.environ["TUI_TRAINER_HOME"]) / "datasets"
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (cache / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)
        (cache / "MNIST" / "raw" / name).write_bytes(b"x")
    (tmp_path / "data" / "images").mkdir(parents=True)  # imagefolder-cnn's data.root, relative to where it runs
    after = marks()
    assert after["mnist-mlp"] == "" and after["pytorch-intro-mnist-mlp"] == "" and after["imagefolder-cnn"] == ""
    assert after["cifar10-cnn"] == "[download]"


@pytest.mark.slow
def test_doctor_and_summary_load_only_what_they_need(tmp_path):
    """torchvision (1.5 s here, torch._dynamo included) is not needed to find a dataset's files, and a model's
    summary on the meta device imported torch._dynamo and sympy (1.9 s): both are gone from these commands."""
    code = ("import sys; sys.argv = ['tui-trainer'] + sys.argv[1:]\n"
            "from tui_trainer.cli import main\n"
            "try: main()\nexcept SystemExit: pass\n"
            "print([m for m in ('torchvision', 'torch._dynamo', 'sympy') if m in sys.modules])")
    for args in (["doctor", "--runs-dir", str(tmp_path / "runs")], ["summary", "spirals-mlp"]):
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
        assert proc.stdout.splitlines()[-1] == "[]", (args, proc.stdout[-300:], proc.stderr[-300:])
    proc = cli("doctor", "--runs-dir", str(tmp_path / "runs"))
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("ok    runs directory ") and lines[1].split()[1:3] == ["dataset", "fashion-mnist"]


@pytest.mark.slow
def test_train_on_a_terminal_says_it_is_loading_until_its_first_line(tmp_path):
    code, out = read_pty(["train", "moons-mlp", "--epochs", "1", "--set", "data.n_samples=200", "--runs-dir",
                          str(tmp_path / "runs")], stderr_too=True)
    assert code == 0, out
    loading = out.index("loading torch, the data and the model…")
    first = out.index("training moons-mlp on ")
    assert loading < first and "\r\x1b[2K" in out[loading:first]  # cleared before the run's first line
    assert "loading torch" not in out[first:]
