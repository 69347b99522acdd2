"""Widgets of the app: config fields and panels, charts, status lines."""
