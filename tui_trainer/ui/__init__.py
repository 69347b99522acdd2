"""The Textual app. The only package that imports textual and textual_plotext."""
