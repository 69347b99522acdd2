"""Steering a fit: the commands a run is sent (stop, save, set_lr, pause, resume, step), acted on between
steps, each acknowledged with what happened, and the pause they can hold the loop in.

The loop calls ``before_step()`` before every step (one truth test when nothing was sent and the run
is not paused) and ``at_interval()`` at every log interval; where commands come from, and when they
act, is the strategy's (``dist.OwnCommands``: between steps; ``dist.SharedCommands``: at log
intervals, on every rank at once). A stop raises ``StopRun``; the loop decides what to save.

Pausing: ``pause`` holds the loop before its next step until ``resume``; ``step`` while paused lets
exactly one step through and pauses again after it (pressed again while that step is under way: one
more). ``Hold`` says which of these the run is in.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from tui_trainer.engine.dist import Commands
from tui_trainer.engine.optim import set_lr
from tui_trainer.engine.progress import Progress, StopRun
from tui_trainer.run.controls import Command, Hold, stopped_message
from tui_trainer.run.events import LrChanged, Paused, Reason, Sink


class Steering:
    """Acts on a fit's commands and holds it while paused."""

    def __init__(self, commands: Commands, sink: Sink, progress: Progress, optimizer: torch.optim.Optimizer,
                 batches: int, save: Callable[[], Path | None]) -> None:
        """``save``: write a checkpoint now (the open interval folded in first), its path or None if it failed."""
        self.commands, self.sink, self.progress, self.optimizer = commands, sink, progress, optimizer
        self.batches, self.save = max(batches, 1), save
        self.hold = Hold()

    @property
    def stepping(self) -> bool:
        """Single steps are being taken: each one is flushed (and watched) on its own."""
        return self.hold.stepping

    def before_step(self) -> None:
        """Act on every command sent since the last step and hold here while paused; under DDP rank 0 only
        collects them (``at_interval`` acts). Then count the single step about to be taken."""
        commands = self.commands.between_steps()
        if commands:
            self._act_all(commands)
        hold = self.hold
        if hold.paused or hold.stepping:
            if not self.commands.shared:
                self._hold_while_paused()
            hold.count_step()

    def at_interval(self) -> None:
        """Under DDP: every rank acts on rank 0's commands here, at the same step, and holds here while paused."""
        if self.commands.shared:
            self._act_all(self.commands.wait(0.0))
            self._hold_while_paused()

    # -- acting on commands ------------------------------------------------------------

    def _act_all(self, commands: list[Command]) -> None:
        for i, command in enumerate(commands):
            try:
                self._act(command)
            except StopRun:
                for later in commands[i + 1:]:
                    later.ack(False, "the run is stopping")
                raise

    def _act(self, command: Command) -> None:
        """One command, acknowledged with what happened."""
        where = self.progress.where()
        match command.name:
            case "stop":
                command.ack(True, f"stopping {where}; saving last.pt")
                raise StopRun(Reason.STOPPED, stopped_message(where, command.args.get("why")))
            case "save":
                path = self.save()
                if path is None:
                    command.ack(False, "the checkpoint could not be written (see the log)")
                else:
                    command.ack(True, f"saved {where}: {path}", path=str(path))
            case "set_lr":
                lr = command.args["lr"]
                set_lr(self.optimizer, lr)
                p = self.progress
                self.sink.emit(LrChanged(p.epoch + 1, p.step, p.epoch + p.batch_in_epoch / self.batches, lr))
                command.ack(True, f"learning rate set to {lr:g} {where}")
            case _:
                self.hold.act(command, where, self._said)

    # -- pausing -----------------------------------------------------------------------

    def _hold_while_paused(self) -> None:
        """Pause after the last single step, and wait here (acting on commands) until resumed."""
        self.hold.wait(self.commands.wait, self._act_all, self._said, self._held)

    def _held(self, seconds: float) -> None:
        self.progress.clock.paused += seconds

    def _said(self, paused: bool) -> None:
        p = self.progress
        self.sink.emit(Paused(paused, p.shown_epoch, p.step))  # the progress line's epoch
