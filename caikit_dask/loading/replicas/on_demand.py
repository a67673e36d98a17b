"""Loading a model when a call finds no replica: lazy, evicted, or scaled to zero.

The first call that finds the model unloaded starts one load (in the background);
the calls that arrive meanwhile wait for the same load, and all of them get its
failure if it fails; the next call after a failure starts a new attempt. Its state
lives under the replica set's lock (``changed``), whose waiters a finished load wakes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class OnDemandLoad:
    """Whether the model must load on the next call, and the load under way."""

    def __init__(
        self, changed: threading.Condition, start: Callable[[], None] | None, needed: bool
    ):
        self._changed = changed
        self._start = start  # starts the load in the background; None: never on demand
        self.needed = needed  # the next call loads the model
        self.evictions = 0  # replicas evicted and not loaded again yet
        self._loading = False
        self._attempts = 0  # loads finished so far
        self._error: BaseException | None = None

    @property
    def possible(self) -> bool:
        return self.needed and self._start is not None

    def join(self, attempt: int | None) -> int:
        """Under the lock: start the load unless one runs; raise the failure of the one
        this call waited for (``attempt``, as returned before). Returns the attempt to
        wait for."""
        if self._loading:
            return self._attempts if attempt is None else attempt
        if attempt is not None and self._attempts > attempt and self._error is not None:
            raise self._error
        self._loading = True
        self._start()
        return self._attempts

    def finished(self, failure: BaseException | None) -> None:
        """The load ended: wake the calls waiting for it."""
        with self._changed:
            self._loading = False
            self._attempts += 1
            self._error = failure
            if failure is None:
                self.needed = False
                self.evictions = 0
            self._changed.notify_all()
