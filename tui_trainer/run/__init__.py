"""The run boundary (stdlib only)."""
