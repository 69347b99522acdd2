"""tui-trainer: train neural networks from a terminal (Textual app and headless engine)."""

__version__ = "0.1.0"
