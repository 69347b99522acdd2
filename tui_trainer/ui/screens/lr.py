"""A small dialog that asks for a new learning rate (validated with the preset rules)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from tui_trainer.config import ConfigError, check_value
from tui_trainer.ui.widgets.fields import parse_text


class LearningRateDialog(ModalScreen[float | None]):
    """Returns the new learning rate, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    LearningRateDialog { align: center middle; }
    LearningRateDialog > Vertical { width: 50; height: auto; border: round $primary; padding: 0 1; }
    LearningRateDialog .error { color: $error; }
    """

    def __init__(self, current: float) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"learning rate (now {self.current:g}); Enter applies, Esc cancels")
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
