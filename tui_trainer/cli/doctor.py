"""``tui-trainer doctor``: what training needs here (the runs folder, the datasets, the app's libraries, torch, the
devices), each as ok, FAIL or a note with what to do. The checks that need no torch print at once; torch loads
behind a spinner."""

from __future__ import annotations

from pathlib import Path

from tui_trainer.cli.busy import Busy
from tui_trainer.cli.common import EXIT_FAILED, EXIT_OK
from tui_trainer.config import RunConfig


def check(runs_dir: Path) -> int:
    """Run every check and print it; the exit code (1 when something must be fixed)."""
    problems = 0

    def report(ok: bool | None, what: str, fix: str = "") -> None:
        nonlocal problems
        mark = {True: "ok  ", False: "FAIL", None: "note"}[ok]
        problems += ok is False
        print(f"{mark}  {what}" + (f"  -> {fix}" if fix and ok is not True else ""))

    # the checks that need no torch first: they print at once, while torch loads behind a spinner
    from tui_trainer.config.datafiles import TORCHVISION_FILES, cache_dir, torchvision_place

    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        probe = runs_dir / ".doctor-probe"
        probe.write_text("ok")
        probe.unlink()
        report(True, f"runs directory {runs_dir.resolve()} is writable")
    except OSError as exc:
        report(False, f"runs directory {runs_dir} is not writable ({exc.strerror})", "choose another with --runs-dir")
    cache = cache_dir(RunConfig())
    for name in TORCHVISION_FILES:  # the files torchvision opens, looked for without importing it (1.5 s)
        place = torchvision_place(name, cache)
        if place.here:
            report(True, f"dataset {name} {place.where}")
        else:
            hint = "apt-get install dataset-fashion-mnist, or " if name == "fashion-mnist" else ""
            report(None, f"dataset {name} not found offline (downloaded on first use if online)",
                   f"{hint}put torchvision's files under {cache}")
    try:
        import textual
        import textual_plotext  # noqa: F401

        report(True, f"textual {textual.__version__} and textual-plotext for the app")
    except ImportError as exc:
        report(False, f"the app cannot start: {exc}", "pip install textual textual-plotext")
    torch_failed: Exception | None = None
    with Busy("loading torch…"):
        try:
            import torch
        except Exception as exc:  # noqa: BLE001 - any import failure is the finding
            torch_failed = exc
    if torch_failed is not None:
        report(False, f"torch cannot be imported ({type(torch_failed).__name__}: {torch_failed})",
               "pip install 'torch>=2.10'")
        return EXIT_FAILED
    major_minor = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
    report(major_minor >= (2, 10), f"torch {torch.__version__}",
           "safe checkpoint loading needs torch >= 2.10: pip install -U torch")
    from tui_trainer.engine.device import all_devices, memory_in_use, pick_device

    with Busy("looking for devices…"):
        found = all_devices()
        device = pick_device("auto")
        memory = memory_in_use(device) if device.type == "cuda" else None
    for info in found:
        report(True, f"device {info.describe()}")
    if device.type == "cuda":
        used, free = memory or (0, 0)
        report(free > 2**30, f"cuda memory free: {free / 2**30:.1f} GiB", "another process holds the GPU: nvidia-smi")
    else:
        if torch.version.cuda:  # a CUDA build that sees no GPU: the driver or the environment hides it
            fix = (f"torch is a CUDA {torch.version.cuda} build but sees no GPU: check the NVIDIA driver (nvidia-smi) and "
                   "CUDA_VISIBLE_DEVICES")
        else:
            fix = "this torch is a CPU-only build: for CUDA install a CUDA build of torch"
        report(None, f"no GPU found: training runs on {device.type}", fix)
    return EXIT_FAILED if problems else EXIT_OK
