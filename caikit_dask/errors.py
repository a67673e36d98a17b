"""caikit's error handler, bound to this package's log channel.

Every user-facing error goes through it so it is logged with a code the way
caikit logs its own, and raised at the call the user made.
"""

import alog
from caikit.core.exceptions import error_handler

log = alog.use_channel("DASK")
error = error_handler.get(log)


class DaskBackendError(RuntimeError):
    """A Dask-side failure (scheduler unreachable, worker lost, timeout)."""


class DaskConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or malformed."""
