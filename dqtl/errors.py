"""Error types raised for bad user input.

Every message names the input, what was expected, what was found and how to fix it.
The CLI turns :class:`InputError` (and ``ValueError``/``TypeError``/``OSError``) into one line
on stderr and exit code 2.
"""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad user input: a malformed file, mismatched samples, an impossible option value."""
