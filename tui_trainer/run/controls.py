"""What a run is told: commands, and the queue the engine polls between steps.

Stdlib only. Whoever steers a run (the control endpoint's thread, a signal handler, a test)
calls ``Controls.send(...)``; the engine calls ``poll()`` between steps and acknowledges each
command with what happened. ``send`` returns the ``Command``, whose ``wait()`` gives that
acknowledgement, or None if the engine did not get to it in time (it still will).
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

COMMANDS = ("stop", "save", "set_lr", "pause", "resume", "step")
"""stop: stop and save last.pt (``why``, optional: what the end says first, e.g. a sweep's "pruned at epoch 3");
save: write a checkpoint now; set_lr: change the learning rate (``lr`` > 0); pause / resume: hold between steps and
go on; step: while paused, one step."""

MAX_WHY = 200
"""Characters a stop's ``why`` may hold: one line of the runs list."""
STOPPED = "; stopped "
"""Between a stop's ``why`` and where the run stopped, in the run's end message (``stop_why`` reads it back)."""


class CommandError(ValueError):
    """A malformed command: says what was wrong and what is allowed."""


@dataclass
class Command:
    """One command and, once the engine acted on it, its acknowledgement."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    reply: dict[str, Any] | None = None
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    def ack(self, ok: bool, message: str, **data: Any) -> None:
        """The engine's answer: whether it was done, and what happened."""
        self.reply = {"ok": ok, "message": message, **data}
        self._done.set()

    def wait(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The acknowledgement, or None if none came within ``timeout`` seconds."""
        return self.reply if self._done.wait(timeout) else None


def parse_command(raw: Any) -> Command:
    """A command from its wire form ``{"cmd": name, ...args}``; CommandError names what is wrong."""
    if not isinstance(raw, dict):
        raise CommandError(f"a command is a JSON object like {{\"cmd\": \"stop\"}}, not {type(raw).__name__}")
    name = raw.get("cmd")
    if name not in COMMANDS:
        raise CommandError(f"unknown command {name!r}; allowed: {', '.join(COMMANDS)}")
    args = {k: v for k, v in raw.items() if k != "cmd"}
    if name == "set_lr":
        lr = args.get("lr")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0 or lr > 100:
            raise CommandError(f"set_lr needs lr, a number > 0 and <= 100 (got {lr!r})")
        args = {"lr": float(lr)}
    elif name == "stop" and args:
        if set(args) != {"why"}:
            raise CommandError(f"stop takes no arguments but why (got {', '.join(sorted(args))})")
        why = args["why"]
        if not isinstance(why, str) or not why.strip() or len(why) > MAX_WHY or "\n" in why:
            raise CommandError(f"stop's why is one line of 1 to {MAX_WHY} characters (got {why!r:.60})")
        args = {"why": why.strip()}
    elif args:
        raise CommandError(f"{name} takes no arguments (got {', '.join(sorted(args))})")
    return Command(name, args)


class Controls:
    """The commands waiting for the engine, in the order they were sent. Thread-safe."""

    def __init__(self) -> None:
        self._queue: collections.deque[Command] = collections.deque()
        self._wake = threading.Condition()
        self.stop_requested = False  # set by send("stop"), read by whoever waits on the run
        self.check: Callable[[], None] | None = None
        """Run after each ``wait`` (the engine, paused): the run process checks that its folder is still there
        (what it raises ends the run, as it would from the sink, where a running fit meets the same check)."""

    def send(self, name: str, **args: Any) -> Command:
        """Queue a command (validated: CommandError if malformed)."""
        return self.submit(parse_command({"cmd": name, **args}))

    def submit(self, command: Command) -> Command:
        """Queue a parsed command."""
        if command.name == "stop":
            self.stop_requested = True
        with self._wake:
            self._queue.append(command)
            self._wake.notify_all()
        return command

    def request_stop(self) -> None:
        """Stop without waiting for the answer (signal handlers: no lock, the deque append is atomic)."""
        self.stop_requested = True
        self._queue.append(Command("stop"))

    def poll(self) -> list[Command]:
        """Commands sent since the last poll (engine, between steps). Costs one truth test when none."""
        if not self._queue:
            return []
        taken = []
        while self._queue:
            taken.append(self._queue.popleft())
        return taken

    def wait(self, timeout: float) -> None:
        """Block until a command arrives or ``timeout`` passes (the engine while paused)."""
        with self._wake:
            if not self._queue:
                self._wake.wait(timeout)
        if self.check is not None:
            self.check()


PAUSED_WAIT = 0.25
"""Seconds between looks at the commands while paused (under DDP: between the ranks' meetings)."""


@dataclass
class Hold:
    """Pause, resume and step, the one rule for the engine (engine/steering.py) and a user's own loop (run/track.py):
    whether the loop holds before its next step (``paused``), or takes single steps asked for while it was paused
    (``stepping``: ``steps_left`` still to take; after the last it pauses again). ``said(paused)``, given to
    ``act`` and ``wait``, is called each time the pause changes (the loop's ``Paused`` event)."""

    paused: bool = False
    stepping: bool = False
    steps_left: int = 0

    def act(self, command: Command, where: str, said: Callable[[bool], None], waits: str = "") -> bool:
        """Act on a pause, resume or step, acknowledged in the engine's words (``where``: the run's position;
        ``waits``: where a paused loop waits, said after "paused"). False for any other command, left alone."""
        match command.name:
            case "pause":
                if self.paused:
                    command.ack(True, f"already paused {where}")
                else:
                    self.pause(True, said)
                    command.ack(True, f"paused {where}{waits}")
            case "resume":
                was_stepping = self.stepping
                self.stepping, self.steps_left = False, 0
                if self.paused or was_stepping:
                    self.pause(False, said)
                    command.ack(True, f"resumed {where}")
                else:
                    command.ack(False, "not paused")
            case "step":
                if self.stepping:  # a step is under way: this one follows it (n pressed twice: two)
                    self.steps_left += 1
                    command.ack(True, f"one more step after the one under way ({where})")
                elif not self.paused:
                    command.ack(False, "step works while paused: pause first")
                else:
                    self.paused, self.stepping, self.steps_left = False, True, 1
                    command.ack(True, f"one step ({where})")
            case _:
                return False
        return True

    def pause(self, paused: bool, said: Callable[[bool], None]) -> None:
        self.paused = paused
        said(paused)

    def wait(self, commands: Callable[[float], list[Command]], act_all: Callable[[list[Command]], None],
             said: Callable[[bool], None], held: Callable[[float], None]) -> None:
        """Before a step: pause after the last single step asked for, then wait here while paused, acting on what
        ``commands(PAUSED_WAIT)`` brings; ``held(seconds)`` after each look (the run's clock leaves them out, so a
        checkpoint saved while paused has the training time)."""
        if self.stepping and self.steps_left == 0:
            self.stepping = False
            self.pause(True, said)
        while self.paused:
            t0 = time.perf_counter()
            act_all(commands(PAUSED_WAIT))
            held(time.perf_counter() - t0)

    def count_step(self) -> None:
        """A single step asked for is about to be taken."""
        if self.stepping and self.steps_left > 0:
            self.steps_left -= 1


def stopped_message(where: str, why: str | None = None) -> str:
    """The end message of a run stopped ``where`` (``position()``'s words): "stopped in epoch 4 (3 complete), step
    120", or with a ``why`` first: "pruned at epoch 3; stopped in epoch 4 (3 complete), step 120"."""
    return f"{why}{STOPPED}{where}" if why else f"stopped {where}"


def stop_why(message: str | None) -> str | None:
    """The ``why`` a stopped run's end message starts with (``stopped_message``), or None."""
    if not message or STOPPED not in message or message.startswith("stopped "):
        return None
    return message.split(STOPPED, 1)[0]
