"""Small modal screens: a new learning rate, what quitting should do, and the keys."""

from __future__ import annotations

from rich.table import Table
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from tui_trainer.config import ConfigError, check_value
from tui_trainer.ui.guard import Guarded
from tui_trainer.ui.widgets.fields import parse_text


class LearningRateDialog(Guarded, ModalScreen[float | None]):
    """Returns the new learning rate, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    LearningRateDialog { align: center middle; }
    LearningRateDialog > Vertical { width: 60; max-width: 95%; height: auto; border: round $primary; padding: 0 1; }
    LearningRateDialog Label { width: 100%; }
    LearningRateDialog .error { color: $error; text-style: bold; }
    """

    def __init__(self, current: float) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "learning rate"
            yield Label(f"now {self.current:g}: type a new rate; Enter applies, Esc cancels")
            yield Input(f"{self.current:g}", id="lr-input")
            yield Label("", classes="error", id="lr-error")

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        try:
            value = check_value("optimizer", "lr", parse_text("optimizer", "lr", event.value))
        except ConfigError as exc:
            self.query_one("#lr-error", Label).update(str(exc))
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class QuitDialog(Guarded, ModalScreen[str | None]):
    """Quit with a run training: "detach" (it goes on), "stop" (it stops and saves), or None (stay)."""

    BINDINGS = [Binding("d", "choose('detach')", "Detach"), Binding("s", "choose('stop')", "Stop run"),
                Binding("escape,c", "choose('')", "Cancel")]
    DEFAULT_CSS = """
    QuitDialog { align: center middle; }
    QuitDialog > Vertical { width: 64; max-width: 95%; height: auto; border: round $warning; padding: 0 1; }
    QuitDialog Label { width: 100%; }
    QuitDialog Button { margin: 1 1 0 0; }
    """

    def __init__(self, run_name: str) -> None:
        super().__init__()
        self.run_name = run_name

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "quit"
            yield Label(f"{self.run_name} is training.", id="what")
            yield Label("d: detach, it goes on (tui-trainer attach follows it again)", id="detach-help")
            yield Label("s: stop it (it saves last.pt), then quit", id="stop-help")
            yield Label("Esc: stay")
            yield Button("Detach (d)", id="detach", variant="primary")
            yield Button("Stop run (s)", id="stop", variant="error")

    def run_ended(self, state: str) -> None:
        """The run ended while the question was open: nothing is left to detach from or stop, so either
        key quits (asked as "detach", which leaves the ended run as it is)."""
        self.query_one("#what", Label).update(f"{self.run_name} has ended ({state}).")
        self.query_one("#detach-help", Label).update("d or s: quit")
        self.query_one("#stop-help", Label).display = False
        self.query_one("#detach", Button).label = "Quit (d)"
        self.query_one("#stop", Button).display = False

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)

    def action_choose(self, choice: str) -> None:
        if choice == "stop" and not self.query_one("#stop", Button).display:
            choice = "detach"  # the run has ended: s quits like d
        self.dismiss(choice or None)


def key_name(keys: str) -> str:
    """How a binding's keys read on the help screen."""
    names = {"question_mark": "?", "ctrl+q": "ctrl+q", "ctrl+c": "ctrl+c", "escape": "Esc", "f1": "F1", "slash": "/"}
    return ", ".join(names.get(k, k) for k in keys.split(","))


class HelpScreen(Guarded, ModalScreen[None]):
    """Every key of the training screen."""

    BINDINGS = [Binding("escape,q,question_mark,f1", "close", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 72; max-width: 95%; height: 90%; border: round $primary; padding: 0 1; }
    """
    EXTRA = {"start": "start a run from the panels (a run process of its own)",
             "stop": "stop the run shown (it saves last.pt)", "save": "save a checkpoint now; the run goes on",
             "pause": "pause the run between steps (the footer then says p Resume)",
             "unpause": "resume the paused run",
             "step": "one training step: of the paused run, or of a new run that then holds",
             "change_lr": "change the learning rate (of the run, or in the panels)",
             "lr_find": "sweep the learning rate on a copy of the model (before a run; progress in the LR tab)",
             "apply_lr": "put the LR finder's suggestion in the panels",
             "resume_run": "continue the run shown from its last good checkpoint",
             "toggle_setup": "hide or show the setup panels", "detach": "quit; the run goes on",
             "mark_run": "Runs tab: mark the highlighted run; two or more marked are overlaid and tabulated",
             "write_svg": "save the screen as an SVG (in the run's folder; with no run shown, in the runs folder)",
             "pick_preset": "open the preset list: type to jump to a name, Enter loads it",
             "every_field": "show every panel's expert fields too (again: fold them)",
             "next_chart": "the next chart, when the terminal has room for one only",
             "quit": "quit (asks whether to detach or stop a training run)", "help": "this screen",
             "leave_field": "leave a text field"}

    SAME_AS = {"lr_find_refused"}  # another action of a key listed already (it only says why it waits)

    def __init__(self, bindings: list[Binding]) -> None:
        super().__init__()
        self.bindings = bindings

    def compose(self) -> ComposeResult:
        keys = Table.grid(padding=(0, 1))  # a grid: a long description wraps under itself, not under the keys
        keys.add_column(width=16, no_wrap=True)
        keys.add_column(ratio=1)
        for b in self.bindings:
            action = b.action.split("(")[0]
            if action in self.SAME_AS:
                continue
            keys.add_row(key_name(b.key), self.EXTRA.get(action) or b.description)
        with VerticalScroll() as box:
            box.border_title = "keys (Esc closes)"
            yield Static(keys, id="keys")
            yield Static("\nThe run trains in its own process: quitting, closing the terminal or an SSH drop leave it "
                         "training. `tui-trainer attach` follows it again; `tui-trainer runs` lists runs.", classes="hint")

    def action_close(self) -> None:
        self.dismiss(None)


class SweepDialog(Guarded, ModalScreen[dict | None]):
    """Start a sweep of the fields given ranges: returns ``{"trials", "parallel", "prune"}`` (``parallel`` None: the
    sweep's default, one per GPU, else as the cores allow), or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    SweepDialog { align: center middle; }
    SweepDialog > Vertical { width: 72; max-width: 95%; height: auto; border: round $primary; padding: 0 1; }
    SweepDialog Label { width: 100%; }
    SweepDialog Input { width: 100%; }
    SweepDialog .error { color: $error; text-style: bold; }
    """

    def __init__(self, ranges: dict[str, str]) -> None:
        super().__init__()
        self.ranges = ranges

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "sweep"
            searched = ", ".join(f"{k} = {v}" for k, v in self.ranges.items())
            yield Label(f"search {searched}; each trial a run of the panels' settings. Enter starts, Esc cancels")
            yield Label("trials")
            yield Input("20", id="sweep-trials")
            yield Label("trials at once (empty: one per GPU, else as the cores allow)")
            yield Input("", id="sweep-parallel")
            yield Label("pruning: median, hyperband or none")
            yield Input("median", id="sweep-prune")
            yield Label("", classes="error", id="sweep-error")

    @on(Input.Submitted)
    def _submit(self, _event: Input.Submitted) -> None:
        trials = self.query_one("#sweep-trials", Input).value.strip()
        parallel = self.query_one("#sweep-parallel", Input).value.strip()
        prune = self.query_one("#sweep-prune", Input).value.strip()
        if not trials.isdigit() or int(trials) < 1:
            self.query_one("#sweep-error", Label).update(f"trials = {trials!r}: a whole number >= 1")
            return
        if parallel and (not parallel.isdigit() or int(parallel) < 1):
            self.query_one("#sweep-error", Label).update(f"trials at once = {parallel!r}: a whole number >= 1, or empty")
            return
        self.dismiss({"trials": int(trials), "parallel": int(parallel) if parallel else None, "prune": prune})

    def action_cancel(self) -> None:
        self.dismiss(None)
