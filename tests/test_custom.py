"""The user's own model and data (issue 21): the examples trained through the CLI and the app, the one-line errors
of the check before Start (a deliberately broken file), entry points, resume re-importing changed code, serve.

Everything is tiny and on the CPU: a few hundred 16x16 images, one or two epochs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.test_cli import run_main
from tests.test_ui import Recorder, ready, until
from tui_trainer.config import apply_overrides, check_value, load_preset
from tui_trainer.config.factories import NO_CODE_ENV, installed, sha256
from tui_trainer.errors import ConfigError
from tui_trainer.run.events import EpochEnded, LogMessage, RunFinished, RunStarted
from tui_trainer.run.folder import RunDir
from tui_trainer.ui.state import RunState

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SMALL = ["--set", "data.args={n = 200, side = 16}", "--set", 'train.device="cpu"']


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m tui_trainer ...`` as a user runs it (stdout a pipe)."""
    return subprocess.run([sys.executable, "-m", "tui_trainer", *args], capture_output=True, text=True, timeout=150,
                          cwd=cwd)


def only_run(runs: Path) -> RunDir:
    (found,) = [p for p in runs.iterdir() if p.is_dir()]
    return RunDir(found)


# -- the examples, through the CLI ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_example_trains_through_the_cli_and_the_run_records_the_code(tmp_path):
    proc = cli("train", str(EXAMPLES / "custom.toml"), "--epochs", "2", "--runs-dir", str(tmp_path / "runs"), *SMALL)
    assert proc.returncode == 0, proc.stderr
    assert "checked one batch through your code: 32 samples -> output 32x3, loss " in proc.stdout
    assert [ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith("epoch ")] == ["1/2", "2/2"]
    run = only_run(tmp_path / "runs")
    config = load_preset(str(run.config_path))  # the config names the files by absolute path
    assert config.model.factory == f"{EXAMPLES / 'my_cnn.py'}:build" and config.model.args == {"width": 8}
    assert config.data.factory == f"{EXAMPLES / 'npy_data.py'}:build" and config.data.args == {"n": 200, "side": 16}
    imports = run.read_status()["imports"]
    assert [(r["what"], r["module"], r["file"], r["sha256"]) for r in imports] == [
        ("model", "my_cnn", str(EXAMPLES / "my_cnn.py"), sha256(EXAMPLES / "my_cnn.py")),
        ("data", "npy_data", str(EXAMPLES / "npy_data.py"), sha256(EXAMPLES / "npy_data.py"))]
    rows = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["val_acc"] > 0.5  # three classes: chance is 1/3
    # runs and compare say which code it ran: file:factory@the first 8 of its sha256
    label = (f"my_cnn.py:build@{sha256(EXAMPLES / 'my_cnn.py')[:8]}, "
             f"npy_data.py:build@{sha256(EXAMPLES / 'npy_data.py')[:8]}")
    listed = cli("runs", "--runs-dir", str(tmp_path / "runs")).stdout.splitlines()
    assert listed[0].split()[-1] == "code" and listed[1].endswith(label), listed
    compared = cli("compare", str(run.path)).stdout.splitlines()
    assert compared[compared.index("code:") + 1] == f"  {run.name}: {label}", compared
    evaluated = cli("evaluate", str(run.last))  # re-imports the factories the checkpoint's config names
    assert evaluated.returncode == 0, evaluated.stderr
    assert "horizontal" in evaluated.stdout and "diagonal" in evaluated.stdout


@pytest.mark.slow
def test_resume_reimports_the_code_and_warns_when_the_file_changed(tmp_path):
    for name in ("my_cnn.py", "npy_data.py", "custom.toml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    first = cli("train", "custom.toml", "--epochs", "1", *SMALL, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run = only_run(tmp_path / "runs")
    before = run.read_status()["imports"][0]["sha256"]
    assert before == sha256(tmp_path / "my_cnn.py")
    with open(tmp_path / "my_cnn.py", "a") as fh:
        fh.write("\n# edited after the run started\n")
    resumed = cli("resume", str(run.last), "--epochs", "2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    warning = [ln for ln in resumed.stdout.splitlines() if "changed since this run started" in ln]
    assert warning == [f"warning: {tmp_path / 'my_cnn.py'} (model factory) changed since this run started (sha256 "
                       f"{before[:12]} then, {sha256(tmp_path / 'my_cnn.py')[:12]} now): resuming with the code as it "
                       "is now"]
    assert run.read_status()["imports"][0]["sha256"] == sha256(tmp_path / "my_cnn.py")  # what the resume imported
    events, _ = run.read_events()  # in the run's own log too: the app and attach show it
    assert ["warning: " + e.text for e in events if isinstance(e, LogMessage) and e.level == "warning"] == warning
    rows = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]  # continuous curves, in the run's own folder


# -- the check before Start: one line at the user's file and line, exit 2, nothing created -------------------------

BROKEN = '''\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.fc = nn.Linear(512, n)

    def forward(self, x):
        x = x.flatten(1)
        return self.fc(x)


def build(*, input_shape, num_outputs):
    return Net(num_outputs)


def not_a_module(*, input_shape, num_outputs):
    return {"a": 1}


def wrong_width(*, input_shape, num_outputs):
    return nn.Sequential(nn.Flatten(), nn.Linear(256, 7))


def raises(*, input_shape, num_outputs):
    raise ValueError("no such width")


def float_labels():
    return {"train": (torch.zeros(8, 1, 16, 16), torch.zeros(8)), "val": (torch.zeros(4, 1, 16, 16),
            torch.zeros(4)), "classes": ["a", "b"]}


def empty():
    return {"train": (torch.zeros(0, 1, 16, 16), torch.zeros(0, dtype=torch.long)), "classes": ["a", "b"]}


def not_data():
    return 5


def missing_arrays():
    import numpy as np

    return {"train": (np.load("no_such_arrays.npy"), None)}
'''

CASES = {
    "forward": ("model", "broken.py:build",
                "broken.py:12: RuntimeError: mat1 and mat2 shapes cannot be multiplied (32x256 and 512x3)"),
    "not a module": ("model", "broken.py:not_a_module",
                     "model.factory = 'broken.py:not_a_module' returned a dict, not a torch.nn.Module"),
    "output width": ("model", "broken.py:wrong_width",
                     "model.factory = 'broken.py:wrong_width': the output is 32x7 for a batch of 32; 3 classes need "
                     "32x3 (build the last layer with num_outputs)"),
    "factory raises": ("model", "broken.py:raises", "broken.py:28: ValueError: no such width"),
    "missing function": ("model", "broken.py:buld",
                         "model.factory = 'broken.py:buld': broken.py has no function 'buld' (did you mean 'build'?); "
                         "it has: Net, build, not_a_module, wrong_width, raises, float_labels, empty, not_data, "
                         "missing_arrays"),
    "does not import": ("model", "noimport.py:build",
                        "model.factory = 'noimport.py:build': noimport.py does not import: noimport.py:1: "
                        "ModuleNotFoundError: No module named 'nosuchmodule_for_this_test'"),
    "syntax error": ("model", "syntax.py:build",
                     "model.factory = 'syntax.py:build': syntax.py does not import: syntax.py:3: SyntaxError: invalid "
                     "syntax"),
    "no file": ("model", "missing.py:build", "model.factory = 'missing.py:build': file not found: {tmp}/missing.py"),
    "float labels": ("data", "broken.py:float_labels",
                     "data.factory = 'broken.py:float_labels': train labels are torch.float32; classification needs "
                     "integer class indices (torch.long), or classes=None for regression"),
    "empty": ("data", "broken.py:empty", "data.factory = 'broken.py:empty': the train set is empty"),
    "error inside a library": ("data", "broken.py:missing_arrays",  # numpy raises it: the line is the user's call
                               "broken.py:47: FileNotFoundError: [Errno 2] No such file or directory: "
                               "'no_such_arrays.npy'"),
    "not datasets": ("data", "broken.py:not_data",
                     "data.factory = 'broken.py:not_data' returned an int; expected CustomData(train=..., val=..., "
                     "classes=[...] or None) or a dict with those keys"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_broken_factory_is_one_line_at_the_users_file_exit_2_nothing_created(case, tmp_path, capsys, monkeypatch):
    kind, factory, line = CASES[case]
    (tmp_path / "broken.py").write_text(BROKEN)
    (tmp_path / "noimport.py").write_text("import nosuchmodule_for_this_test\n")
    (tmp_path / "syntax.py").write_text("import torch\n\ndef build(:\n    pass\n")
    monkeypatch.chdir(tmp_path)  # a factory path on the command line is relative to the current folder
    extra = ["--set", f"{kind}.factory={factory}", "--set", f"{kind}.args={{}}",
             *(SMALL[:2] if kind == "model" else [])]
    for command in (["train", "--dry-run"], ["summary"], ["train"]):
        code, out, err = run_main(capsys, command[0], str(EXAMPLES / "custom.toml"), *command[1:], *extra,
                                  *(["--runs-dir", str(tmp_path / "runs")] if command[0] == "train" else []))
        assert (code, err) == (2, f"error: {line.format(tmp=tmp_path)}\n"), (command, out)
        assert "Traceback" not in out + err
        runs = tmp_path / "runs"  # a train that fails at setup removes its run's folder
        assert not runs.exists() or not list(runs.iterdir())


def test_config_mistakes_are_one_line_with_what_is_allowed():
    cfg = load_preset(str(EXAMPLES / "custom.toml"))
    mistakes = {
        "model.factory=": "model.arch = 'custom' needs model.factory: 'my_model.py:build' or 'mypackage.models:build'",
        "model.factory=my_cnn.py": "model.factory = 'my_cnn.py': expected 'module:function' or 'file.py:function'",
        'model.arch="mlp"': "model.factory = ",
        "model.args=3": "model.args = 3: must be a table like {width = 32, depth = 2}",
        'data.scaling="standardize"': "data.scaling = 'standardize': your own data is used as your factory returns it",
        "model.arch=plugin:nothing-here": "model.arch = 'plugin:nothing-here': no installed package registers",
    }
    for override, said in mistakes.items():
        with pytest.raises(ConfigError) as exc:
            apply_overrides(cfg, [override])
        assert said in str(exc.value) and "\n" not in str(exc.value)


def test_a_factory_path_is_relative_to_the_preset_file_there_and_to_the_current_folder_on_the_command_line(
        tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    preset = tmp_path / "sub" / "p.toml"
    preset.write_text('[model]\narch = "custom"\nfactory = "models/net.py:build"\n')
    assert load_preset(str(preset)).model.factory == f"{tmp_path / 'sub' / 'models' / 'net.py'}:build"
    monkeypatch.chdir(tmp_path)
    cfg = apply_overrides(load_preset(str(preset)), ["model.factory=other.py:make"])
    assert cfg.model.factory == f"{tmp_path / 'other.py'}:make"
    assert apply_overrides(cfg, ["model.factory=mypkg.models:make"]).model.factory == "mypkg.models:make"
    from tui_trainer.config.datafiles import data_place  # presets and doctor: is the data here (nothing imported)

    example = load_preset(str(EXAMPLES / "custom.toml"))
    assert data_place(example).where == f"made by {EXAMPLES / 'npy_data.py'}:build" and data_place(example).here
    gone = data_place(apply_overrides(example, ["data.factory=gone.py:build"]))
    assert (gone.here, gone.where) == (False, f"no file {tmp_path / 'gone.py'}: set data.factory")


def test_an_own_loss_is_what_the_check_and_the_run_use(tmp_path, capsys, monkeypatch):
    (tmp_path / "losses.py").write_text(textwrap.dedent('''
        import torch.nn.functional as F


        def doubled():
            """Cross-entropy, twice."""
            return lambda out, y: 2 * F.cross_entropy(out, y)


        def not_callable():
            return 3
        '''))
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(capsys, "summary", str(EXAMPLES / "custom.toml"), *SMALL[:2], "--set",
                              "model.loss=losses.py:doubled")
    assert code == 0, err
    loss = float(out.splitlines()[-1].split("loss ")[1].split(",")[0])
    assert 2 * 1.0 < loss < 2 * 1.2  # three classes at the start: cross-entropy near ln 3 = 1.0986, doubled
    code, _, err = run_main(capsys, "train", str(EXAMPLES / "custom.toml"), "--dry-run", *SMALL[:2], "--set",
                            "model.loss=losses.py:not_callable")
    assert (code, err) == (2, "error: model.loss = 'losses.py:not_callable' returned an int; expected a callable "
                              "(outputs, targets) -> loss, e.g. an nn.Module\n")


# -- entry points ---------------------------------------------------------------------------------------------------


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """examples/plugin as if pip-installed: its package and a dist-info with its entry point, on sys.path."""
    site = tmp_path / "site"
    shutil.copytree(EXAMPLES / "plugin" / "tiny_plugin", site / "tiny_plugin")
    info = site / "tiny_plugin-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-plugin\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[tui_trainer.models]\ntiny-mlp = tiny_plugin:build\n\n"
                                           "[tui_trainer.datasets]\npatterns = npy_data:build\n")
    shutil.copy(EXAMPLES / "npy_data.py", site / "npy_data.py")
    monkeypatch.syspath_prepend(str(site))
    return site


def test_an_installed_packages_model_is_listed_checked_and_trained(plugin, tmp_path, capsys):
    assert list(installed("model")) == ["tiny-mlp"]
    code, out, _ = run_main(capsys, "presets")
    assert code == 0
    assert out.splitlines()[-5:] == [
        'models from installed packages (tui_trainer.models; model.arch = "plugin:NAME"):',
        "plugin:tiny-mlp  A tiny MLP from a plugin: flatten, one hidden layer of tanh units, a linear output.", "",
        'datasets from installed packages (tui_trainer.datasets; data.dataset = "plugin:NAME"):',
        "plugin:patterns  Images from a folder of .npy arrays, or three generated patterns (bars across, bars down, "
        "a diagonal)."]
    args = ["--set", "model.arch=plugin:tiny-mlp", "--set", "model.args={hidden = 16}", "--set", "data.n_samples=300"]
    code, out, err = run_main(capsys, "summary", "spirals-mlp", *args)
    assert code == 0, err
    assert out.splitlines()[0] == ("model: plugin:tiny-mlp (A tiny MLP from a plugin: flatten, one hidden layer of "
                                   "tanh units, a linear output.)")
    assert "total params: 82" in out and "32 samples -> output 32x2" in out  # 2*16+16 + 16*2+2
    code, out, err = run_main(capsys, "train", "spirals-mlp", "--epochs", "1", "--runs-dir", str(tmp_path / "runs"),
                              *args)
    assert code == 0, err
    assert only_run(tmp_path / "runs").read_status()["imports"][0]["module"] == "tiny_plugin"
    # the plugin's dataset, and a model named by module (importable: the plugin's package) instead of by file
    code, out, err = run_main(capsys, "train", "spirals-mlp", "--dry-run", "--set", "data.dataset=plugin:patterns",
                              "--set", "data.args={n = 100}", "--set", "model.arch=custom", "--set",
                              "model.factory=tiny_plugin:build")
    assert code == 0, err
    assert "checked one batch through your code: 32 samples -> output 32x3" in out


def test_tensors_that_fit_stay_resident_and_other_datasets_stream_through_the_loader(tmp_path):
    import torch

    from tui_trainer.data import LoaderBatches, TensorBatches, load_data

    (tmp_path / "points_data.py").write_text(textwrap.dedent('''
        import torch
        from torch.utils.data import Dataset


        class Points(Dataset):
            def __len__(self):
                return 40

            def __getitem__(self, i):
                return torch.tensor([float(i), 1.0]), i % 2


        def as_dataset():
            return {"train": Points(), "classes": ["even", "odd"]}


        def three_targets():
            return {"train": (torch.randn(40, 2), torch.randn(40, 3)), "classes": None}


        def as_tensors():
            return {"train": (torch.randn(40, 2), torch.arange(40) % 2), "val": (torch.randn(8, 2), torch.zeros(8)),
                    "classes": None}
        '''))
    base = ["data.dataset=custom", "data.num_workers=0", "data.val_fraction=0.25"]
    streamed = load_data(apply_overrides(load_preset("spirals-mlp"), [*base, f"data.factory={tmp_path}/points_data.py:"
                                                                     "as_dataset"]), torch.device("cpu"))
    assert isinstance(streamed.train, LoaderBatches) and isinstance(streamed.val, LoaderBatches)
    assert (streamed.train.n_samples, streamed.val.n_samples, streamed.input_shape) == (30, 10, (2,))
    assert streamed.class_names == ["even", "odd"] and streamed.task == "classification"
    xb, yb = next(streamed.train.epoch(0))
    assert xb.shape == (30, 2) and yb.dtype == torch.long  # one batch: 30 samples at batch_size 32
    resident = load_data(apply_overrides(load_preset("spirals-mlp"), [*base, f"data.factory={tmp_path}/points_data.py:"
                                                                      "as_tensors"]), torch.device("cpu"))
    assert isinstance(resident.train, TensorBatches) and resident.task == "regression"
    assert resident.val.y.shape == (8, 1) and resident.val.y.dtype == torch.float32  # float targets, one column
    assert resident.out_features == 1
    three = load_data(apply_overrides(load_preset("spirals-mlp"), [*base, f"data.factory={tmp_path}/points_data.py:"
                                                                   "three_targets"]), torch.device("cpu"))
    assert three.out_features == 3 and three.train.n_samples == 30  # regression of 3 values a sample


def test_the_data_example_reads_a_folder_of_npy_arrays(tmp_path):
    import numpy as np
    import torch

    from tui_trainer.data import TensorBatches, load_data

    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("val", 8)):
        np.save(tmp_path / f"x_{split}.npy", rng.normal(size=(n, 1, 8, 8)).astype(np.float32))
        np.save(tmp_path / f"y_{split}.npy", np.arange(n) % 2)
    (tmp_path / "classes.txt").write_text("cat dog\n")
    cfg = apply_overrides(load_preset(str(EXAMPLES / "custom.toml")), [f'data.args={{folder = "{tmp_path}"}}'])
    data = load_data(cfg, torch.device("cpu"))
    assert isinstance(data.train, TensorBatches) and data.class_names == ["cat", "dog"]
    assert (data.train.n_samples, data.val.n_samples, data.input_shape, data.out_features) == (24, 8, (1, 8, 8), 2)
    assert data.train.y.dtype == torch.long and torch.equal(data.val.y, torch.arange(8) % 2)


# -- trust: serve ---------------------------------------------------------------------------------------------------


def test_serve_refuses_code_unless_allowed_and_its_sessions_refuse_such_fields(capsys, monkeypatch):
    import tui_trainer.cli.serve as serve_mod

    served = []
    monkeypatch.setattr(serve_mod, "serve_app", lambda *args: served.append(args))
    code, _, err = run_main(capsys, "serve", "--preset", str(EXAMPLES / "custom.toml"))
    assert code == 2 and not served
    assert err == (f"error: preset 'custom-cnn' names code to run ({EXAMPLES / 'my_cnn.py'}:build); serve runs it "
                   "for anyone who reaches the page: start serve with --allow-code to allow it, or serve a built-in "
                   "preset\n")
    code, _, err = run_main(capsys, "serve", "--preset", str(EXAMPLES / "custom.toml"), "--allow-code")
    assert code == 0, err
    assert served[0][1] == "127.0.0.1" and served[0][-1] is True
    monkeypatch.setenv(NO_CODE_ENV, "1")  # what serve sets for its browser sessions without --allow-code
    with pytest.raises(ConfigError, match="naming code is off in this server"):
        check_value("model", "factory", "my_cnn.py:build")


# -- the app ----------------------------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_the_app_checks_the_code_before_start_and_trains_the_example(tmp_path):
    from tui_trainer.ui.app import make_app

    (tmp_path / "broken.py").write_text(BROKEN)
    cfg = apply_overrides(load_preset(str(EXAMPLES / "custom.toml")),
                          ["train.epochs=1", "data.args={n = 200, side = 16}", 'train.device="cpu"'])
    rec = Recorder()
    app = make_app(cfg, tmp_path / "runs")
    async with app.run_test(size=(120, 40), message_hook=rec) as pilot:
        screen = await ready(pilot, helper=True)
        start = screen.query_one("#start")
        await until(pilot, lambda: screen.setup.code_check is None, timeout=60)  # the helper's batch passed
        assert not start.disabled
        params = str(screen.query_one("#param-count").render())
        assert params == "params: 2,019"
        screen.setup.field("model.factory").query_one("Input").value = f"{tmp_path / 'broken.py'}:build"
        screen.setup.field("model.args").query_one("Input").value = ""
        await until(pilot, lambda: screen.setup.code_check is not None and "broken.py" in screen.setup.code_check[1],
                    timeout=60)
        assert start.disabled
        panel_error = str(screen.query_one("#panel-architecture .panel-error").render())
        assert panel_error == "broken.py:12: RuntimeError: mat1 and mat2 shapes cannot be multiplied (32x256 and 512x3)"
        await pilot.press("r")
        assert not screen.live and screen.run_state is not RunState.STARTING  # refused at once, nothing started
        await pilot.pause(0.5)
        assert not (tmp_path / "runs").exists() and not rec.of(RunStarted)
        screen.setup.field("model.factory").query_one("Input").value = f"{EXAMPLES / 'my_cnn.py'}:build"
        await until(pilot, lambda: screen.setup.code_check is None, timeout=60)
        assert not start.disabled
        await pilot.click("#start")
        await until(pilot, lambda: rec.of(RunFinished), timeout=120)
        assert rec.of(RunFinished)[0].reason == "completed"
        assert [e.epoch for e in rec.of(EpochEnded)] == [1]
        run = RunDir(Path(rec.of(RunFinished)[0].run_dir))
        assert load_preset(str(run.config_path)).model.factory == f"{EXAMPLES / 'my_cnn.py'}:build"


def test_the_readme_shows_each_example():
    readme = (ROOT / "README.md").read_text()
    for needle in ("examples/my_cnn.py", "examples/npy_data.py", "examples/custom.toml", "pip install examples/plugin",
                   "--allow-code"):
        assert needle in readme


async def test_installed_plugins_are_among_the_apps_architecture_and_dataset_choices(plugin, tmp_path):
    from tests.conftest import tiny
    from tui_trainer.ui.app import make_app

    app = make_app(tiny(), tmp_path / "runs")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await ready(pilot)
        arch = screen.setup.field("model.arch").query_one("Select")
        dataset = screen.setup.field("data.dataset").query_one("Select")
        assert [v for _label, v in arch._options][3:] == ["custom", "torchvision:resnet18", "torchvision:mobilenet_v3_small",
                                                          "torchvision:densenet121", "plugin:tiny-mlp"]
        assert "plugin:patterns" in [v for _label, v in dataset._options]
        assert not screen.setup.field("model.factory").display  # shown where custom is chosen
        arch.value = "custom"
        await pilot.pause()
        assert screen.setup.field("model.factory").display and screen.setup.field("model.args").display
        assert "model.arch = 'custom' needs model.factory" in str(
            screen.query_one("#panel-architecture .panel-error").render())
        assert screen.query_one("#start").disabled


@pytest.mark.slow
async def test_the_app_resumes_your_model_to_more_epochs_with_continuous_curves(tmp_path, capsys):
    from tests.test_ui import training
    from tui_trainer.cli.common import resume_config
    from tui_trainer.run.events import StepLogged
    from tui_trainer.ui.widgets.charts import SeriesChart

    code, _out, err = run_main(capsys, "train", str(EXAMPLES / "custom.toml"), "--epochs", "1", "--runs-dir",
                               str(tmp_path / "runs"), *SMALL)
    assert code == 0, err
    run = only_run(tmp_path / "runs")
    cfg = resume_config(run.last, epochs=2)
    assert cfg.model.factory == f"{EXAMPLES / 'my_cnn.py'}:build" and cfg.train.epochs == 2
    async with training(cfg, tmp_path, resume=run.last) as (pilot, screen, rec):
        await until(pilot, lambda: rec.of(RunFinished) and rec.of(RunFinished)[-1].epoch == 2, timeout=120)
        assert [e.epoch for e in rec.of(EpochEnded)] == [1, 2]  # the old curve, then the new epoch
        assert screen.query_one("#loss-chart", SeriesChart).series["val"][0] == (1, 2)
        assert any(s.epoch == 2 for s in rec.of(StepLogged))
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2]  # in the run's own folder
