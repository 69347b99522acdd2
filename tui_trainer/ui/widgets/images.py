"""The Images tab: what the network sees before a run, and what it gets wrong after each epoch.

Before a run (or with a run that has no sample yet) it shows training examples of each class, raw or as fed (after
the preset's scaling and augmentation): the helper process loads the data and picks them (``examples`` op, engine/
samples.py), asked through the screen when the tab is first shown for a dataset (``ExamplesWanted``). With a run
shown it reads the run's samples.json (run/samples.py) whenever the run view says an epoch ended, so an attached
app shows the same: the validation examples with the highest loss, the most confused classes, per class right and
wrong, and a CNN's first-layer filters. ``t`` shows the next view. Drawing is ui/pictures.py (half blocks; the
grey ramp under NO_COLOR).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Group
from rich.text import Text
from textual import work
from textual.containers import VerticalScroll
from textual.message import Message
from textual.reactive import var
from textual.widgets import Static, TabPane

from tui_trainer.run.samples import FILE_NAME as SAMPLES_FILE
from tui_trainer.run.samples import SampleSet, read_samples
from tui_trainer.ui.guard import Guarded
from tui_trainer.ui.pictures import VIEWS, PictureGrid, example_pictures, halved, view_pictures

EXAMPLE_VIEWS = ("raw", "fed")
ALL_VIEWS = (*EXAMPLE_VIEWS, *VIEWS)
HINT = "training examples of image datasets show here (loading…); after each epoch, the mistakes"
NOT_IMAGES = "no images: this dataset is not one of images (the Images tab shows image classifiers)"


class ImagesTab(Guarded, TabPane):
    """Training examples per class (raw, as fed) and the run's validation sample (mistakes, confused, classes)."""

    view: var[str] = var("raw", init=False)
    """What the tab shows: raw or fed (training examples), or a view of the run's sample (``pictures.VIEWS``)."""

    @dataclass
    class SampleRead(Message):
        """A run's samples.json, read in a worker thread."""

        path: Path
        stamp: int
        sample: SampleSet

    class ExamplesWanted(Message):
        """The tab is shown and has no training examples of the panels' dataset: the screen asks the helper."""

    def __init__(self, title: str, *, id: str | None = None) -> None:
        super().__init__(title, id=id)
        self.examples: dict | None = None  # the helper's reply (engine.samples.training_examples)
        self.examples_error: str | None = None
        self.sample: SampleSet | None = None  # the run shown's samples.json, as last read
        self.run_path: Path | None = None
        self._grid: Static | None = None
        self._stamp = 0  # samples.json's modification time when it was read

    async def fill(self) -> None:
        """Mount the grid's view."""
        self._grid = Static(HINT, id="images-grid")
        await self.mount(VerticalScroll(self._grid))

    # -- what the screen and the run view tell it ------------------------------------------

    def activated(self) -> None:
        """The tab is shown: ask for training examples if there are none (or they failed)."""
        if self.examples is None:
            self.screen.post_message(self.ExamplesWanted())  # to the screen itself: it did not come up through the tabs
        self.draw()

    def show_examples(self, reply: dict | None, error: str | None = None) -> None:
        """The helper's training examples (or why there are none)."""
        self.examples, self.examples_error = reply, error
        self.draw()

    def forget_examples(self, shown: bool) -> None:
        """The panels' dataset changed: the examples are another's (``shown``: the tab shows, ask again now)."""
        self.examples, self.examples_error = None, None
        if shown:
            self.activated()
        else:
            self.draw()

    def show_run(self, path: str | None) -> None:
        """Another run is shown (None: none): its sample, if it has one yet; never the last run's pictures."""
        self.run_path = Path(path) if path else None
        self.sample = None
        if self.view not in EXAMPLE_VIEWS:
            self.view = "raw"  # the watcher draws
        else:
            self.draw()
        self.load_sample()

    def load_sample(self) -> None:
        """Read the run's samples.json again (an epoch ended), in a worker thread: a JSON file of pictures is
        never read on the UI thread. The first one turns the tab to the mistakes."""
        if self.run_path is not None:
            self._read_sample(self.run_path, self._stamp if self.sample is not None else None)

    @work(thread=True, exclusive=True, group="samples", exit_on_error=False, description="read samples.json")
    def _read_sample(self, path: Path, known: int | None) -> None:
        try:
            stamp = (path / SAMPLES_FILE).stat().st_mtime_ns
        except OSError:
            return  # none yet: written at the first epoch's end
        if stamp == known:
            return  # unchanged since it was read (an attach folds many epochs at once)
        sample = read_samples(path)
        if sample is not None:
            self.post_message(self.SampleRead(path, stamp, sample))

    def on_images_tab_sample_read(self, message: SampleRead) -> None:
        if message.path != self.run_path:
            return  # read for a run no longer shown
        self._stamp = message.stamp
        first = self.sample is None
        self.sample = message.sample
        if first and self.view in EXAMPLE_VIEWS:
            self.view = "mistakes"  # the watcher draws
        else:
            self.draw()

    def next_view(self) -> None:
        """Show the next view (the run's views only once it has a sample)."""
        views = self.views()
        i = views.index(self.view) if self.view in views else -1
        self.view = views[(i + 1) % len(views)]

    def views(self) -> tuple[str, ...]:
        """The views there is something to show in: the run's only with a sample, filters only of a CNN."""
        if self.sample is None:
            return EXAMPLE_VIEWS
        return tuple(v for v in ALL_VIEWS if v != "filters" or self.sample.filters)

    def watch_view(self) -> None:
        self.draw()

    # -- drawing ---------------------------------------------------------------------------

    def draw(self) -> None:
        """Draw the view (the grid is drawn by Rich when the tab is shown, at its width)."""
        if self._grid is None:
            return
        keys = "t: " + " ".join(f"[{v}]" if v == self.view else v for v in self.views())
        color = not self.app.no_color
        if self.view in EXAMPLE_VIEWS:
            if self.examples is None:
                self._grid.update(Text(self.examples_error or HINT))
                return
            title, pictures = example_pictures(self.examples, fed=self.view == "fed")
        elif self.sample is not None:
            title, pictures = view_pictures(self.sample, self.view)
        else:
            self._grid.update(Text("no validation sample yet: it is written at each epoch's end"))
            return
        if pictures and self.size.height and self.size.height < pictures[0].shape[1] // 2 + 6:
            pictures = [halved(p) for p in pictures]  # too low for one whole picture, its caption and the titles
            keys += " (half size: the view is low)"
        self._grid.update(Group(Text(keys, style="dim"), PictureGrid(pictures, color=color, title=title)))

    def on_resize(self) -> None:
        self.draw()  # the picture size follows the tab's height
