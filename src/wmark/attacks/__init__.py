"""Placeholder: see the corresponding issue."""
