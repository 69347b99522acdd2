"""The lecture notes' experiments (issue 16) and the knobs they need, checked against the notes' printed numbers.

Notes: lecture 5 "Training Neural Networks" (autograd example, regression toy, early stopping,
bitmoji MLP), lecture 6 "Neural Networks" (Fashion-MNIST MLP and its regularised variants) and
the MNIST "Training Neural Networks" notebook. benchmarks/lecture.py prints every comparison.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.conftest import tiny
from tests.test_data_real import make_image_folder
from tui_trainer.config import ConfigError, RunConfig, apply_overrides, from_dict, load_preset, save_user_preset, to_toml
from tui_trainer.data import LoaderBatches, TensorBatches, load_data, peek_shape, real, stratified_split
from tui_trainer.data.synthetic import make_regression_toy
from tui_trainer.engine import describe_model, fit, prepare
from tui_trainer.engine.checkpoint import load_checkpoint
from tui_trainer.engine.losses import BinaryLogitLoss, build_loss, count_correct, predicted_class
from tui_trainer.engine.models import ImageNetInput, build_model
from tui_trainer.engine.optim import build_optimizer, l1_penalty, param_groups
from tui_trainer.engine.params import parameter_table
from tui_trainer.engine.stopping import EarlyStopping
from tui_trainer.errors import DataError
from tui_trainer.run.events import EpochEnded, ListSink

CPU = torch.device("cpu")
LECTURE_PRESETS = ["lecture5-autograd", "lecture5-regression-fit", "lecture5-overfitting", "lecture5-early-stopping",
                   "lecture5-bitmoji-mlp", "lecture6-fashion-mnist-mlp", "lecture6-fashion-mnist-early-stopping",
                   "lecture6-fashion-mnist-capacity", "lecture6-fashion-mnist-l2", "lecture6-fashion-mnist-dropout",
                   "lecture6-fashion-mnist-batchnorm-dropout", "pytorch-intro-mnist-mlp"]


def lecture(name: str, *extra: str) -> RunConfig:
    return apply_overrides(load_preset(name), ['train.device="cpu"', *extra])


@pytest.mark.parametrize("name", LECTURE_PRESETS)
def test_every_lecture_preset_names_its_source(name):
    cfg = load_preset(name)
    assert cfg.name == name
    assert any(src in cfg.description for src in ("Lecture 5", "Lecture 6", "Training Neural Networks")), cfg.description
    assert "cell" in cfg.description or "Putting it all Together" in cfg.description


# -- lecture 5: autograd on the 1-2-1 sigmoid network at (x, y) = (1, 3) ----------------------------------


def _one_backward(cfg: RunConfig) -> nn.Module:
    """The notes' ``loss = criterion(model(x), y); loss.backward()`` through the engine's model building."""
    _device, data, model = prepare(cfg)
    xb, yb = next(iter(data.train.epoch(0)))
    build_loss(data.task)(model(xb), yb).backward()
    return model


def test_autograd_preset_reproduces_the_notes_gradients():
    rows = parameter_table(_one_backward(lecture("lecture5-autograd")))
    # the notes: hidden weight/bias grads [-0.3480, -1.3032], output weight grads [-2.9191, -2.4229], bias -3.3142
    assert [(name, value, round(grad, 4)) for name, value, grad in rows] == [
        ("layers.1.weight[0,0]", 1.0, -0.3480), ("layers.1.weight[1,0]", -1.0, -1.3032),
        ("layers.1.bias[0]", 1.0, -0.3480), ("layers.1.bias[1]", 2.0, -1.3032),
        ("layers.3.weight[0,0]", 1.0, -2.9191), ("layers.3.weight[0,1]", 2.0, -2.4229),
        ("layers.3.bias", -1.0, -3.3142),  # one value: named as the Gradients tab names it (engine/params.py)
    ]


def test_autograd_preset_takes_the_notes_sgd_step(runs):
    from tui_trainer.run.events import ParamValues, StepLogged

    sink = ListSink()
    result = fit(lecture("lecture5-autograd"), sink, runs_dir=runs)
    assert result.reason == "completed" and result.step == 1
    # the step as the run reports it (the Gradients tab): each scalar's value, gradient and value after the step
    (step,) = sink.of(ParamValues)
    assert step.step == 1
    _device, _data, start = prepare(lecture("lecture5-autograd"))
    with torch.no_grad():  # one sample: the epoch's train loss is that sample's loss before the step
        before = nn.MSELoss()(start(torch.tensor([[1.0]])), torch.tensor([[3.0]])).item()
    assert result.rows[0]["train_loss"] == pytest.approx(before, rel=1e-6) and before > 1
    assert sink.of(StepLogged)[0].loss == pytest.approx(before, rel=1e-6)  # the live loss of a one-sample step
    assert [(name, value, round(grad, 4), round(after, 4)) for name, value, grad, after in step.params] == [
        ("layers.1.weight[0,0]", 1.0, -0.3480, 1.0348), ("layers.1.weight[1,0]", -1.0, -1.3032, -0.8697),
        ("layers.1.bias[0]", 1.0, -0.3480, 1.0348), ("layers.1.bias[1]", 2.0, -1.3032, 2.1303),
        ("layers.3.weight[0,0]", 1.0, -2.9191, 1.2919), ("layers.3.weight[0,1]", 2.0, -2.4229, 2.2423),
        ("layers.3.bias", -1.0, -3.3142, -0.6686)]
    state = {k: [round(v, 4) for v in t.flatten().tolist()] for k, t in result.model.state_dict().items()}
    # the notes' state_dict after optimizer.step() with SGD lr 0.1
    assert state == {"layers.1.weight": [1.0348, -0.8697], "layers.1.bias": [1.0348, 2.1303],
                     "layers.3.weight": [1.2919, 2.2423], "layers.3.bias": [-0.6686]}
    # ...and the gradient one more backward pass gives there (the notes' "b3 gradient after call 1")
    x, y = torch.tensor([[1.0]]), torch.tensor([[3.0]])
    result.model.zero_grad()  # the notes' optimizer.zero_grad(): the step's gradients are still there
    nn.MSELoss()(result.model(x), y).backward()
    assert [round(g, 4) for g in result.model.layers[1].bias.grad.tolist()] == [-0.1991, -0.5976]


def test_parameter_table_names_values_and_missing_gradients():
    model = build_model(load_preset("lecture5-autograd").model, (1,), 1)
    rows = parameter_table(model)
    assert len(rows) == 7 and all(grad is None for _n, _v, grad in rows)
    assert rows[5] == ("layers.3.weight[0,1]", 2.0, None)
    assert parameter_table(build_model(RunConfig().model, (2,), 2)) == []  # 4,482 scalars: too many to list


# -- lecture 5: the regression toy and early stopping ---------------------------------------------------


def test_regression_toy_data_are_the_notes_tensors():
    x, y, xv, yv = make_regression_toy(40, 1.0, seed=0, val_points=6)
    torch.manual_seed(0)
    X = torch.arange(-3, 3, 0.15)
    assert torch.equal(x[:, 0], X) and torch.equal(y[:, 0], X**2 + X * torch.normal(0, 1, (40,)))
    assert xv[:, 0].tolist() == torch.arange(-3.0, 3.0).tolist() and yv[:, 0].tolist() == [9, 4, 1, 0, 1, 4]
    assert torch.equal(make_regression_toy(40, 1.0, 0)[2], torch.linspace(-3, 3, 25)[:-1, None])  # 24 points as before


@pytest.mark.slow
def test_early_stopping_preset_stops_at_the_notes_epoch(runs):
    sink = ListSink()
    result = fit(lecture("lecture5-early-stopping"), sink, runs_dir=runs)
    # the notes: "Stopped early at epoch 53 - val loss increased for 3 consecutive epochs!"
    assert result.reason == "early_stopped" and result.epoch == 53
    assert result.message.startswith("early stop at epoch 53: val_loss rose 3 epochs in a row")
    losses = [e.val_loss for e in sink.of(EpochEnded)]
    assert losses[-4] < losses[-3] < losses[-2] < losses[-1] and not losses[-5] < losses[-4]
    assert [round(v, 4) for v in losses[:3]] == [9.7316, 8.4143, 7.5937]  # plain PyTorch, the notes' cell, same seeds
    last = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(result.model.state_dict()[k], last[k]) for k in last)  # the last weights are kept
    assert "best weights restored" not in result.message


def test_global_shuffle_draws_what_dataloaders_draw():
    """data.shuffle = 'global': the order and the global generator's state match iterating the notes' loaders."""
    x, y = torch.arange(10.0)[:, None], torch.arange(10.0)
    torch.manual_seed(3)
    trainloader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=1, shuffle=True)
    validloader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:4], y[:4]), batch_size=1, shuffle=True)
    expected = []
    for _ in range(3):
        expected.append([int(b[1]) for b in trainloader])
        list(validloader)
    after = torch.rand(1)
    batches = TensorBatches(x, y, 1, shuffle=True, order="global")
    torch.manual_seed(3)
    got = [[int(b[1]) for b in batches.epoch(seed=99)] for _ in range(3)]
    assert got == expected and torch.equal(torch.rand(1), after)
    loader = LoaderBatches(torch.utils.data.TensorDataset(x, y), 1, True, 0, CPU, order="global-train")
    torch.manual_seed(3)
    first = [int(b[1]) for b in loader.epoch(seed=99)]
    torch.manual_seed(3)
    assert first == [int(b[1]) for b in trainloader]


def test_stop_rules():
    worse = EarlyStopping("val_loss", patience=3, min_delta=0.0, rule="worse_in_a_row")
    flags = [worse.update(v, i) or worse.should_stop for i, v in enumerate([5, 4, 4.5, 4.6, 3.0, 3.1, 3.2, 3.3], 1)]
    assert flags == [True, True, False, False, True, False, False, True]  # the count restarts after 3.0
    assert worse.message(8).startswith("early stop at epoch 8: val_loss rose 3 epochs in a row (best 3 at epoch 5)")
    plain = EarlyStopping("val_loss", patience=3, min_delta=0.0)
    for i, v in enumerate([5, 4, 4.5, 3.9, 4.0, 4.1], 1):
        plain.update(v, i)
    assert not plain.should_stop  # 2 epochs without a new best since 3.9
    plain.update(4.2, 7)
    assert plain.should_stop and "did not improve for 3 epochs" in plain.message(7)
    acc = EarlyStopping("val_acc", 1, 0.0, "worse_in_a_row")
    acc.update(0.9, 1)
    acc.update(0.8, 2)
    assert acc.should_stop and "val_acc fell 1 epochs in a row" in acc.message(2)
    again = EarlyStopping("val_loss", 3, 0.0, "worse_in_a_row")
    again.load_state_dict(worse.state_dict())
    assert again.state_dict() == worse.state_dict() and again.should_stop


def test_data_and_init_seeds_are_separate():
    base = ["data.n_samples=200", 'train.device="cpu"']
    a = prepare(tiny(*base, "data.seed=1", "model.seed=5"))
    b = prepare(tiny(*base, "data.seed=2", "model.seed=5"))
    c = prepare(tiny(*base, "data.seed=1", "model.seed=6", "train.seed=9"))
    assert not torch.equal(a[1].train.x, b[1].train.x) and torch.equal(a[1].train.x, c[1].train.x)
    same = [torch.equal(p, q) for p, q in zip(a[2].parameters(), b[2].parameters(), strict=True)]
    assert all(same)
    assert not torch.equal(next(a[2].parameters()), next(c[2].parameters()))
    torch.manual_seed(5)  # model.seed = 5 is torch.manual_seed(5) right before the layers are built
    reference = nn.Linear(2, 64)
    assert torch.equal(a[2].layers[1].weight, reference.weight)


# -- lecture 6: Fashion-MNIST ---------------------------------------------------------------------------


def test_stratified_split_holds_out_each_class_share():
    y = torch.arange(70_000) % 10
    train, val = stratified_split(y, 0.25, seed=0)
    assert len(train) == 52_500 and len(val) == 17_500  # the notes' train_test_split(X, y, stratify=y)
    assert torch.bincount(y[val]).tolist() == [1750] * 10
    assert sorted(torch.cat([train, val]).tolist()) == list(range(70_000))
    uneven = torch.tensor([0] * 7 + [1] * 3)
    tr, va = stratified_split(uneven, 0.25, seed=1)
    assert len(va) == 3 and torch.bincount(uneven[va]).tolist() == [2, 1]


def test_lecture_fashion_preset_loads_raw_pixels_on_the_notes_split(tmp_path):
    cfg = lecture("lecture6-fashion-mnist-mlp", f'data.cache_dir="{tmp_path / "cache"}"')
    data = load_data(cfg, CPU)
    assert data.train.n_samples == 52_500 and data.val.n_samples == 17_500
    assert torch.bincount(data.val.y).tolist() == [1750] * 10
    x = data.train.x
    assert x.dtype == torch.float32 and float(x.max()) == 255.0 and float(x.min()) == 0.0
    assert torch.equal(x, x.round())  # the raw byte values, exactly
    assert data.pixel_norm == ((0.0,), (1 / 255,))
    official = load_data(lecture("fashion-mnist-mlp", f'data.cache_dir="{tmp_path / "cache"}"'), CPU)
    assert official.train.n_samples == 60_000 and abs(float(official.train.x.mean())) < 0.01  # unchanged


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core VM, two threads that wait on each other run batch-32 steps
    up to 40x slower (8 ms against 350 ms a step, measured while other jobs ran)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_lecture_fashion_mlp_first_epoch_is_in_the_notes_regime(runs, tmp_path, one_thread):
    """Epoch 1 of the notes' run (raw pixels, 52,500 at batch 32). Measured (benchmarks/RESULTS.md): the tool over
    seeds 0-6, loss 2.12-3.10 and accuracy 0.61-0.74; the notes' loop in plain PyTorch over seeds 0-4, 2.15-2.79 and
    0.67-0.75; the notes print 2.3524 and 0.7495. The bounds are that spread and a margin; the standardised preset's
    epoch 1 (0.5437 and 0.8296) is far outside them."""
    cfg = lecture("lecture6-fashion-mnist-mlp", "train.epochs=1", f'data.cache_dir="{tmp_path / "cache"}"')
    first = fit(cfg, ListSink(), runs_dir=runs).rows[0]
    assert 2.0 <= first["train_loss"] <= 3.2, first
    assert 0.55 <= first["train_acc"] <= 0.80, first


@pytest.mark.skipif(not os.environ.get("TUI_TRAINER_SLOW"), reason="5 full epochs (~2-5 min on 2 cores): "
                    "set TUI_TRAINER_SLOW=1; benchmarks/lecture.py records the comparison")
@pytest.mark.timeout(1800)
def test_lecture_fashion_mlp_five_epochs_match_the_notes(runs, tmp_path, one_thread):
    cfg = lecture("lecture6-fashion-mnist-mlp", f'data.cache_dir="{tmp_path / "cache"}"')
    fifth = fit(cfg, ListSink(), runs_dir=runs).rows[4]
    # epoch 5 measured: tool 0.475-0.626 and 0.774-0.857 (seeds 0-6), plain PyTorch 0.476-0.600 and 0.790-0.856;
    # the notes: 0.4758 and 0.8550
    assert 0.40 <= fifth["train_loss"] <= 0.70 and 0.76 <= fifth["train_acc"] <= 0.88, fifth


@pytest.mark.parametrize(("name", "params"), [
    ("lecture6-fashion-mnist-mlp", 669_706),  # the notes: 401,920 + 262,656 + 5,130
    ("lecture6-fashion-mnist-capacity", 209_514),
    ("lecture6-fashion-mnist-batchnorm-dropout", 228_181),
    ("pytorch-intro-mnist-mlp", 109_386),
    ("lecture5-bitmoji-mlp", 6_302_465),
])
def test_lecture_models_have_the_notes_parameter_counts(name, params, tmp_path):
    cfg = load_preset(name)
    if cfg.data.dataset == "imagefolder":
        cfg = apply_overrides(cfg, [f'data.root="{make_image_folder(tmp_path / "img", per_class=2)}"'])
    assert describe_model(cfg)[0] == params


def test_lecture_layers_are_the_notes_layers():
    bn = build_model(load_preset("lecture6-fashion-mnist-batchnorm-dropout").model, (1, 28, 28), 10)
    kinds = [type(m).__name__ for m in bn.layers]
    assert kinds == ["Flatten"] + ["Linear", "BatchNorm1d", "ReLU", "Dropout"] * 3 + ["Linear"]
    assert [m.p for m in bn.layers if isinstance(m, nn.Dropout)] == [0.5, 0.5, 0.5]
    drop = build_model(load_preset("lecture6-fashion-mnist-dropout").model, (1, 28, 28), 10)
    assert [type(m).__name__ for m in drop.layers][1:5] == ["Linear", "ReLU", "Dropout", "Linear"]
    assert [m.p for m in drop.layers if isinstance(m, nn.Dropout)] == [0.2, 0.1]
    mnist = build_model(load_preset("pytorch-intro-mnist-mlp").model, (1, 28, 28), 10)
    assert isinstance(mnist.layers[-1], nn.LogSoftmax)
    with pytest.raises(ConfigError, match="model.dropout has 3 values but model.hidden has 2 layers"):
        apply_overrides(RunConfig(), ["model.dropout=[0.1, 0.2, 0.3]"])
    with pytest.raises(ConfigError, match="one value per layer applies to mlp"):
        from_dict({"data": {"dataset": "fashion-mnist"}, "model": {"arch": "cnn", "dropout": [0.1, 0.2]}})


def test_weight_decay_on_biases_as_the_notes_optimizer_does():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    assert [len(g["params"]) for g in param_groups(model, 1e-4)] == [1, 3]  # weights only: the default
    assert [len(g["params"]) for g in param_groups(model, 1e-4, decay_biases=True)] == [4]
    reg = load_preset("lecture6-fashion-mnist-l2").regularization
    assert reg.weight_decay == 1e-4 and reg.decay_biases
    opt = build_optimizer(model, load_preset("lecture6-fashion-mnist-l2").optimizer, reg, CPU)
    reference = torch.optim.RMSprop(model.parameters(), lr=1e-3, weight_decay=1e-4)
    assert [g["weight_decay"] for g in opt.param_groups] == [g["weight_decay"] for g in reference.param_groups]
    lin = nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.fill_(-2.0)
        lin.bias.fill_(3.0)
    assert float(l1_penalty(lin).detach()) == 4.0 and float(l1_penalty(lin, include_biases=True).detach()) == 7.0


# -- MNIST notebook: Normalize(0.5, 0.5), log-softmax and NLL, SGD 0.003 ------------------------------------


def _fake_torchvision(monkeypatch, n_train: int = 256, n_test: int = 64) -> None:
    def tensors(name, root, train):
        c, h, w = real.TORCHVISION[name][2]
        n = n_train if train else n_test
        g = torch.Generator().manual_seed(1 if train else 2)
        return torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8), torch.arange(n) % 10

    monkeypatch.setattr(real, "ensure_dataset", lambda name, root: root)
    monkeypatch.setattr(real, "_tensors", tensors)


def test_mnist_preset_scales_as_normalize_half_and_trains_with_nll(monkeypatch, runs):
    _fake_torchvision(monkeypatch)
    cfg = lecture("pytorch-intro-mnist-mlp", "train.epochs=1")
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.data.batch_size) == ("sgd", 0.003, 64)
    data = load_data(cfg, CPU)
    raw = real._tensors("mnist", Path("."), True)[0]
    assert torch.allclose(data.train.x, (raw.float() / 255 - 0.5) / 0.5)  # ToTensor, then Normalize((0.5,), (0.5,))
    assert isinstance(build_loss("classification", head="log_softmax"), nn.NLLLoss)
    sink = ListSink()
    result = fit(cfg, sink, runs_dir=runs)
    assert result.reason == "completed"
    # the logged loss is the NLL of log-probabilities: the same number as cross-entropy on them, recomputed here
    model = result.model.eval()
    with torch.no_grad():
        out = model(data.val.x)
    assert torch.allclose(out.exp().sum(1), torch.ones(len(out)), atol=1e-5)  # the model ends in LogSoftmax
    nll, ce = F.nll_loss(out, data.val.y).item(), F.cross_entropy(out, data.val.y).item()
    assert sink.of(EpochEnded)[-1].val_loss == pytest.approx(nll, rel=1e-5) and nll == pytest.approx(ce, rel=1e-5)
    # random labels: one epoch of SGD at 0.003 stays near chance, -log(1/10)
    assert result.rows[0]["train_loss"] == pytest.approx(2.3026, abs=0.15)


def test_missing_mnist_says_where_to_put_the_files(monkeypatch, tmp_path):
    def offline(name, root):
        raise OSError("no network")

    monkeypatch.setattr(real, "_download", offline)
    cfg = lecture("pytorch-intro-mnist-mlp", f'data.cache_dir="{tmp_path / "c"}"')
    with pytest.raises(DataError) as err:
        load_data(cfg, CPU)
    msg = str(err.value)
    assert "\n" not in msg and f"put torchvision's files under {tmp_path / 'c' / 'MNIST'}" in msg


# -- lecture 5: the bitmoji MLP, a binary head of one logit with BCE ---------------------------------------


def test_missing_bitmoji_folder_says_where_to_put_the_images(tmp_path):
    cfg = lecture("lecture5-bitmoji-mlp")
    with pytest.raises(DataError) as err:
        load_data(cfg, CPU)
    where = (tmp_path / "data" / "eva_bitmoji_rgb").resolve()  # the tests run in tmp_path
    assert "\n" not in str(err.value) and f"put the images in {where}/train/<class>/ and valid/<class>/" in str(err.value)


def test_bitmoji_preset_trains_a_one_logit_head_with_bce(tmp_path, runs):
    root = make_image_folder(tmp_path / "bitmoji", per_class=6)
    cfg = lecture("lecture5-bitmoji-mlp", f'data.root="{root}"', "data.image_size=16", "train.epochs=2",
                  "data.num_workers=0")
    data = load_data(cfg, CPU)
    assert data.class_names == ["eva", "not_eva"] and data.out_features == 1  # the notes' {'eva': 0, 'not_eva': 1}
    assert float(data.train.x.max()) <= 1.0 and float(data.train.x.min()) >= 0.0  # ToTensor's [0, 1]
    sink = ListSink()
    result = fit(cfg, sink, runs_dir=runs)
    assert result.reason in ("completed", "early_stopped")
    with torch.no_grad():
        out = result.model.eval()(data.val.x)
    assert out.shape == (len(data.val.x), 1)
    ends = sink.of(EpochEnded)
    expected = F.binary_cross_entropy_with_logits(out[:, 0], data.val.y.float()).item()
    assert ends[-1].val_loss == pytest.approx(expected, rel=1e-5)
    assert ends[-1].val_acc == pytest.approx(((torch.sigmoid(out[:, 0]) > 0.5).long() == data.val.y).float().mean().item())


def test_binary_head_on_moons_learns_and_reports(runs):
    sink = ListSink()
    cfg = tiny("train.epochs=8", "model.head=\"binary\"", preset="moons-mlp")
    result = fit(cfg, sink, runs_dir=runs)
    assert result.rows[-1]["val_acc"] >= 0.85
    assert result.model.layers[-1].out_features == 1
    logits = torch.tensor([[-2.0], [0.5], [3.0]])
    assert predicted_class(logits).tolist() == [0, 1, 1] and int(count_correct(logits, torch.tensor([0, 0, 1]))) == 2
    assert predicted_class(torch.tensor([[0.1, 0.9]])).tolist() == [1]
    smoothed = BinaryLogitLoss(0.1)(logits, torch.tensor([0, 1, 1]))
    assert float(smoothed) == pytest.approx(float(F.binary_cross_entropy_with_logits(logits[:, 0],
                                                                                      torch.tensor([0.05, 0.95, 0.95]))))
    with pytest.raises(ConfigError, match="model.head = 'binary' is one logit for two classes; 'fashion-mnist' has 10"):
        from_dict({"data": {"dataset": "fashion-mnist"}, "model": {"head": "binary"}})


# -- the knobs: validation, cross-checks, presets -----------------------------------------------------------


@pytest.mark.parametrize(("raw", "needle"), [
    ({"data": {"dataset": "spirals", "augment": ["hflip"]}},
     "augmentations apply to image datasets (fashion-mnist, mnist, cifar10, imagefolder), not to 'spirals'"),
    ({"data": {"dataset": "spirals", "scaling": "unit"}}, "data.scaling = 'unit' divides pixels by 255"),
    ({"data": {"dataset": "mnist", "scaling": "given"}}, "needs data.mean and data.std"),
    ({"data": {"dataset": "mnist", "mean": [0.5], "std": [0.5]}}, "used by data.scaling = 'given' only"),
    ({"data": {"dataset": "cifar10", "scaling": "given", "mean": [0.5, 0.5], "std": [0.5, 0.5]}}, "give 1 (shared) or 3"),
    ({"data": {"dataset": "moons", "split": "official"}}, "'moons' has no validation split of its own"),
    ({"data": {"dataset": "regression-toy", "split": "stratified"}}, "needs classes"),
    ({"data": {"dataset": "regression-toy"}, "model": {"head": "binary"}}, "is for classification"),
    ({"data": {"dataset": "points"}, "model": {"hidden": [2], "init_weights": [{"weight": [[1.0]]}]}},
     "model.init_weights has 1 layers; an mlp with hidden = [2] has 2 linear layers"),
    ({"data": {"dataset": "points"}, "model": {"hidden": [3], "init_weights": [{"weight": [[1.0], [2.0]]},
                                                                              {"weight": [[1.0, 2.0]]}]}},
     "layer 1 has 2 weight rows but model.hidden[0] = 3"),
])
def test_cross_checks_are_one_line(raw, needle):
    with pytest.raises(ConfigError) as err:
        from_dict(raw)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_knobs_validate_with_suggestions_and_read_typed_text():
    with pytest.raises(ConfigError, match=r"data.split = 'stratifed': not allowed \(did you mean 'stratified'\?\)"):
        apply_overrides(RunConfig(), ['data.split="stratifed"'])
    with pytest.raises(ConfigError, match=r"regularization.stop_rule = 'worse': not allowed \(did you mean"):
        apply_overrides(RunConfig(), ['regularization.stop_rule="worse"'])
    with pytest.raises(ConfigError, match="data.std = 0.0: must be > 0"):
        apply_overrides(RunConfig(), ['data.scaling="given"', "data.mean=[0.5]", "data.std=[0.0]"])
    with pytest.raises(ConfigError, match="model.seed = -2: must be >= -1"):
        apply_overrides(RunConfig(), ["model.seed=-2"])
    from tui_trainer.config import check_value

    assert check_value("data", "mean", "0.5, 0.25") == [0.5, 0.25]  # as typed into the app, brackets left out
    assert check_value("model", "dropout", "0.2, 0.1") == [0.2, 0.1]
    layers = load_preset("lecture5-autograd").model.init_weights
    shown = ", ".join(str(v) for v in layers)  # the app shows a list as its items joined by commas
    assert check_value("model", "init_weights", shown) == layers


def test_explicit_weights_round_trip_and_must_fit_the_data(tmp_path):
    cfg = load_preset("lecture5-autograd")
    path = tmp_path / "p.toml"
    path.write_text(to_toml(cfg))
    assert load_preset(str(path)).to_dict() == cfg.to_dict()
    build_model(cfg.model, (1,), 1)  # fits: 1 input
    with pytest.raises(ConfigError, match=r"layer 1 weight is 2x1 but the model's layer 1 is 2x2 \(2 outputs, 2 inputs\)"):
        build_model(cfg.model, (2,), 1)


def test_val_fraction_shows_only_where_it_is_used():
    from tui_trainer.ui.widgets.panels import applies

    def shown(*overrides: str) -> bool:
        raw = apply_overrides(RunConfig(), list(overrides)).to_dict()
        return applies("data", "val_fraction", raw)

    assert not shown('data.dataset="fashion-mnist"')  # its official test split is the validation set
    assert shown('data.dataset="fashion-mnist"', 'data.split="stratified"')
    assert shown('data.dataset="spirals"') and not shown('data.dataset="regression-toy"')
    assert shown('data.dataset="imagefolder"', 'data.root="x"')  # a folder without valid/ is split by it
    raw = apply_overrides(RunConfig(), ['data.scaling="given"', "data.mean=[0.0, 0.0]", "data.std=[1.0, 1.0]"]).to_dict()
    assert applies("data", "mean", raw) and not applies("data", "mean", RunConfig().to_dict())


def test_saving_over_a_builtin_preset_is_refused():
    cfg = load_preset("xor-mlp")
    with pytest.raises(ConfigError) as err:
        save_user_preset(cfg, "fashion-mnist-mlp")
    assert str(err.value) == ("preset name 'fashion-mnist-mlp' is taken by a built-in preset; choose another, "
                              "e.g. 'fashion-mnist-mlp-mine'")
    save_user_preset(cfg, "fashion-mnist-mlp-mine")
    with pytest.raises(ConfigError, match="e.g. 'fashion-mnist-mlp-mine-2'"):
        save_user_preset(cfg, "fashion-mnist-mlp")


# -- issue 13: torchvision backbones on grey images -----------------------------------------------------------


def test_backbone_on_grey_images_sees_imagenet_normalised_rgb():
    published = real.TORCHVISION["fashion-mnist"][3]
    adapter = ImageNetInput(1, published)
    pixels = torch.rand(2, 1, 40, 40)
    x = (pixels - published[0][0]) / published[1][0]  # as the data module scales Fashion-MNIST
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in real.IMAGENET_STATS)
    assert torch.allclose(adapter(x), (pixels.expand(-1, 3, -1, -1) - mean) / std, atol=1e-5)
    assert adapter(torch.zeros(1, 1, 28, 28)).shape == (1, 3, 32, 32)  # upsampled to what every backbone takes


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small", "densenet121"])
def test_backbones_just_work_on_fashion_mnist(arch, monkeypatch):
    _fake_torchvision(monkeypatch, n_train=8, n_test=4)
    cfg = apply_overrides(load_preset("fashion-mnist-mlp"), [f'model.arch="torchvision:{arch}"', 'train.device="cpu"'])
    _device, data, model = prepare(cfg)
    model.eval()
    assert model(data.val.x).shape == (4, 10)
    assert describe_model(cfg)[0] == sum(p.numel() for p in model.parameters())


def test_summary_of_a_backbone_on_grey_images_prints_no_traceback(capsys):
    from tests.test_cli import run_main

    code, out, err = run_main(capsys, "summary", "fashion-mnist-mlp", "--set", "model.arch=torchvision:resnet18")
    assert code == 0 and "Traceback" not in out + err and "total params: 11,181,642" in out


def test_peek_shape_knows_the_binary_head():
    assert peek_shape(apply_overrides(load_preset("moons-mlp"), ['model.head="binary"'])) == ((2,), 1)
    assert peek_shape(load_preset("lecture5-autograd")) == ((1,), 1)
