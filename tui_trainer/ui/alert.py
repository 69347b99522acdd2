"""The attached app's word when the run it follows ends: a terminal bell and a desktop notification through the
terminal's own escape sequences, which travel over SSH: OSC 9 (iTerm2, WezTerm, Windows Terminal, kitty, foot,
ghostty) and OSC 777 ``notify;title;body`` (urxvt, VTE terminals: GNOME Terminal, Tilix). A terminal that knows
neither ignores them. Inside tmux each sequence is wrapped in tmux's passthrough (DCS ``tmux;``), which tmux 3.3+
forwards with ``set -g allow-passthrough on``; the bell reaches tmux's own bell handling unwrapped.

Off by default (a bell out of nowhere surprises): ``TUI_TRAINER_NOTIFY_END=1`` in the app's environment turns it
on (``launch_ui`` reads it; ``make_app(notify_end=True)`` in tests). The run process's own ``--notify`` hook
(run/notify.py) is the way with nothing attached.
"""

from __future__ import annotations

import re

NOTIFY_END_ENV = "TUI_TRAINER_NOTIFY_END"
BELL = "\a"
_ON, _OFF = ("1", "on", "true", "yes"), ("", "0", "off", "false", "no")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # control characters would end or corrupt the sequence


def notify_end_setting(value: str | None) -> bool:
    """Whether ``TUI_TRAINER_NOTIFY_END`` turns the end alert on; ValueError (one line) for another word."""
    word = (value or "").strip().lower()
    if word in _ON:
        return True
    if word in _OFF:
        return False
    raise ValueError(f"{NOTIFY_END_ENV}={value!r}: allowed 1/on/true/yes (bell and desktop notification when the "
                     "followed run ends) or 0/off/false/no (default)")


def _clean(text: str, limit: int) -> str:
    return _UNSAFE.sub(" ", text).strip()[:limit]


def terminal_alert(title: str, body: str, tmux: bool = False) -> str:
    """The bytes to write to the terminal: the bell, OSC 9 with ``title: body``, and OSC 777 notify (whose fields
    are ``;``-separated, so the title carries none)."""
    title, body = _clean(title, 80), _clean(body, 200)
    osc9 = f"\x1b]9;{title}: {body}\x07"
    osc777 = f"\x1b]777;notify;{title.replace(';', ',')};{body}\x07"
    if tmux:
        osc9, osc777 = _tmux_passthrough(osc9), _tmux_passthrough(osc777)
    return BELL + osc9 + osc777


def _tmux_passthrough(sequence: str) -> str:
    """``sequence`` for tmux to hand to the outer terminal: DCS tmux; with every ESC doubled, ST."""
    return "\x1bPtmux;" + sequence.replace("\x1b", "\x1b\x1b") + "\x1b\\"


def end_title(state: str) -> str:
    """The notification's title for a run that ended ``state``."""
    return f"tui-trainer: run {state}"
