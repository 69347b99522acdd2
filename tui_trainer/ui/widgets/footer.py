"""The footer of key hints, drawn whether or not the app has the focus."""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer


class KeyFooter(Footer):
    """Textual's footer leaves itself empty until the app has the focus. In a browser (``tui-trainer serve``) the
    page starts without it, so the footer was an empty strip until the first key press: this one draws the keys
    at once, and again whenever they change."""

    def bindings_changed(self, screen: Screen) -> None:
        super().bindings_changed(screen)
        if not screen.app.app_focus and self.is_attached and screen is self.screen:
            self.call_after_refresh(self.recompose)
