"""The one error type entry scripts print as a single line instead of a traceback."""
from __future__ import annotations


class ConfigError(ValueError):
    """A problem the user fixes in the config or the data; the message says what and where."""
