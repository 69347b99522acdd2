"""The LR find tab: sweeps the learning rate in a child process and owns what the sweep says.

``sweep(cfg)`` starts ``tui-trainer lr-find --json --progress`` on the panels' settings (a child process: the
sweep imports torch, the app never does). The tab owns the sweep's progress (shown as the empty chart's word),
its result (the chart of smoothed loss by learning rate) and its suggestion (a marked line, and
``suggestion`` for the screen's ``a``). It says what it found to the Log through ``Said``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.message import Message
from textual.reactive import var
from textual.widgets import TabPane
from textual.worker import Worker, WorkerState, get_current_worker

from tui_trainer.config import RunConfig, to_toml
from tui_trainer.run.formats import format_number
from tui_trainer.ui.guard import Guarded
from tui_trainer.ui.messages import Said

if TYPE_CHECKING:
    from tui_trainer.ui.widgets.charts import SeriesChart

HINT = "press f to sweep the learning rate, a to apply"


@dataclass
class LrFound(Message, bubble=False):
    """The LR finder's sweep (a dict of lrs, losses, smoothed, suggestion: ``lr-find --json``), or why it failed."""

    result: dict[str, Any] | None
    error: str | None = None


@dataclass
class LrProgress(Message, bubble=False):
    """How far the LR finder's child process has got (only the latest matters)."""

    text: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LrProgress)


def lr_progress_text(line: str) -> str | None:
    """The words for the LR tab from one progress line of ``lr-find --progress`` (None: not a progress line)."""
    try:
        p = json.loads(line)
    except ValueError:
        return None
    if not isinstance(p, dict) or p.get("progress") != "lr-find":
        return None
    return (f"LR finder: sweep {p['sweep']} of at most {p['max_sweeps']}, step {p['step']:,} of {p['steps']:,}, "
            f"lr {format_number(p['lr'])}, smoothed loss {format_number(p['loss'])} ({p['elapsed_s']:.0f} s)")


class LrFinderTab(Guarded, TabPane):
    """The LR find tab: its chart, the sweep's child process, and the suggestion."""

    suggestion: var[float | None] = var(None, bindings=True)
    """The suggested learning rate of the last sweep (None: no sweep yet, or no suggestion): ``a`` applies it."""

    def __init__(self, title: str, *, max_hz: float = 2.0, id: str | None = None) -> None:
        super().__init__(title, id=id)
        self.max_hz = max_hz
        self.process: subprocess.Popen[str] | None = None  # the sweep's child process (the last one started)
        self._sweeping = False
        self._chart: SeriesChart | None = None  # mounted by fill()

    async def fill(self) -> None:
        """Mount the chart (after the first frame: plotext's import alone is ~65 ms)."""
        from tui_trainer.ui.widgets.charts import SeriesChart

        chart = SeriesChart("LR finder", "loss", hint=HINT, max_hz=self.max_hz, id="lr-chart")
        chart.xlog, chart.xlabel = True, "learning rate"
        await self.mount(chart)
        self._chart = chart

    @property
    def sweeping(self) -> bool:
        """A sweep was asked for and has not answered (set here on the UI thread: a second ``f`` while the first
        sweep's child is still being started is refused, not a second sweep)."""
        return self._sweeping

    def sweep(self, cfg: RunConfig) -> None:
        """Sweep the learning rate on a fresh copy of ``cfg``'s model, in a child process (one at a time: the
        caller checks ``sweeping``)."""
        self._sweeping = True
        self._show_progress("LR finder: starting (loading torch and the data)…")
        self._sweep(cfg)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "lr-find" and event.state in (WorkerState.ERROR, WorkerState.CANCELLED):
            self._sweeping = False  # no answer will come (Guarded reports an error)

    def stop(self) -> None:
        """End a sweep under way (the app is closing). Touches no widget: the app may be gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()

    def on_unmount(self) -> None:
        self.stop()  # the worker reading its output then ends too

    @work(thread=True, exclusive=True, group="lr-find", exit_on_error=False, description="LR finder")
    def _sweep(self, cfg: RunConfig) -> None:
        with tempfile.TemporaryDirectory(prefix="tui-trainer-lr-") as tmp:
            preset, result_path = Path(tmp) / "panels.toml", Path(tmp) / "result.json"
            preset.write_text(to_toml(cfg), encoding="utf-8")
            with open(result_path, "w+", encoding="utf-8") as result_file:  # a file: the sweep can be large
                process = subprocess.Popen(
                    [sys.executable, "-m", "tui_trainer.cli", "lr-find", str(preset), "--json", "--progress"],
                    stdout=result_file, stderr=subprocess.PIPE, text=True)
                self.process = process
                errors = []
                assert process.stderr is not None
                worker = get_current_worker()
                for line in process.stderr:  # progress lines as they come, until the child ends
                    if worker.is_cancelled:  # the tab is going: the child goes with it
                        process.kill()
                        break
                    progress = lr_progress_text(line)
                    if progress is not None:
                        self.post_message(LrProgress(progress))
                    elif line.strip():
                        errors.append(line.strip())
                code = process.wait()
                result_file.seek(0)
                out = result_file.read()
        if get_current_worker().is_cancelled:
            return
        if code != 0:
            self.post_message(LrFound(None, (errors or [f"exit code {code}"])[-1]))
            return
        try:
            self.post_message(LrFound(json.loads(out.strip().splitlines()[-1])))
        except (ValueError, IndexError):
            self.post_message(LrFound(None, "the LR finder gave no result"))

    def on_lr_progress(self, message: LrProgress) -> None:
        self._show_progress(message.text)

    def on_lr_found(self, message: LrFound) -> None:
        self._sweeping = False
        if message.error or message.result is None:
            self.post_message(Said(f"LR finder failed: {message.error}", "error"))
            self._show_progress(f"LR finder failed: {message.error}; press f to try again")
            return
        r = message.result
        if self._chart is not None:
            self._chart.clear_series()
            self._chart.set_series("loss", r["lrs"], r["smoothed"])
        suggestion = r.get("suggestion")
        if suggestion is None:
            why = r.get("reason") or "the loss did not fall enough anywhere in the sweep"
            self.post_message(Said(f"LR finder: no suggestion: {why}", "warning"))
            self.notify(f"LR finder: no suggestion: {why}", severity="warning")
        else:
            if self._chart is not None:
                self._chart.add_marker(suggestion, f"suggested {suggestion:.3g}")
            self.post_message(Said(f"suggested lr: {suggestion:.3g} (press a to put it in the Optimizer panel)"))
            self.notify(f"suggested lr {suggestion:.3g}: press a to apply")
        self.suggestion = suggestion

    def _show_progress(self, text: str) -> None:
        """Where the sweep has got, as the empty chart's word (the sweep's curve replaces it when done)."""
        if self._chart is not None:
            self._chart.clear_series(text)
