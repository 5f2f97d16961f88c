"""User-facing errors: one line that says what is wrong and where."""

from __future__ import annotations


class VltrError(Exception):
    """An error caused by the user's input (a file, a config key, a label).

    Entry points catch it and print ``<prog>: error: <message>`` on one line, then exit non-zero,
    instead of a traceback.
    """


class StoreError(VltrError):
    """A feature store that is missing, unreadable or not in the expected format."""


class ConfigError(VltrError):
    """A configuration key that is unknown, mistyped or inconsistent."""


class CheckpointError(VltrError):
    """A checkpoint that is missing, unreadable, refused (its pickle asks for code) or does not
    fit the model."""
