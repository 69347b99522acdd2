"""Screens of the app: the training screen holds the behaviour."""
