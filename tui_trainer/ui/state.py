"""Where the run shown stands, as the app sees it: one value instead of flags that had to agree.

The screen holds it in a reactive; its watchers (the screen's, the run view's) lock the panels, enable the
buttons and refresh the footer's keys, so no code path has to remember to update them.
"""

from __future__ import annotations

from enum import StrEnum


class RunState(StrEnum):
    """The run shown: none, being launched, live (training or paused), ended, or lost."""

    NONE = "none"
    """No run shown (or the one shown trained nothing and was removed)."""
    STARTING = "starting"
    """A run process is being launched (a new run, or a resume): its handle is not here yet."""
    LIVE = "live"
    """Followed, and it has not ended (it may still be loading torch)."""
    PAUSED = "paused"
    """Live, and held between steps (n steps it, p lets it run)."""
    ENDED = "ended"
    """Its last session wrote its end and its status is no longer live."""
    LOST = "lost"
    """It cannot be followed any more: crashed, its folder deleted, or a newer protocol."""

    @property
    def live(self) -> bool:
        """A run is being launched or has not ended: the panels are locked, Start waits."""
        return self in (RunState.STARTING, RunState.LIVE, RunState.PAUSED)

    @property
    def steerable(self) -> bool:
        """Commands (stop, save, pause) can be sent: a run process is there and has not ended."""
        return self in (RunState.LIVE, RunState.PAUSED)
