"""One value per live Dask client: a monitor, a publisher, what its workers already know.

Keyed weakly by the client itself, never by ``id(client)`` (a new client can reuse
a closed one's id and would inherit its state), and made under a lock so that two
threads asking at once share one value. The value goes with the client.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from distributed import Client

T = TypeVar("T")


class PerClient(Generic[T]):
    """A registry holding ``factory(client)`` for each client that asked for one."""

    def __init__(self, factory: Callable[[Client], T]):
        self._factory = factory
        self._values: weakref.WeakKeyDictionary[Client, T] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, client: Client) -> T:
        """The client's value, made on first use."""
        with self._lock:
            value = self._values.get(client)
            if value is None:
                value = self._values[client] = self._factory(client)
            return value

    def peek(self, client: Client) -> T | None:
        """The client's value if it has one; never makes one."""
        with self._lock:
            return self._values.get(client)

    def renew(self, client: Client) -> T | None:
        """Make the client's value again if it had one (its scheduler was replaced)."""
        with self._lock:
            if client not in self._values:
                return None
            value = self._values[client] = self._factory(client)
            return value

    def pop(self, client: Client) -> T | None:
        """Forget the client's value (e.g. when the client closes) and return it."""
        with self._lock:
            return self._values.pop(client, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)


class PerScheduler(PerClient[T]):
    """A ``PerClient`` whose value is set up on the client's scheduler (a plugin, a topic
    subscription). That state dies with the scheduler, so when a new scheduler answers
    at the same address ``renew_all`` makes every such value again."""

    _all: list[PerScheduler] = []

    def __init__(self, factory: Callable[[Client], T]):
        super().__init__(factory)
        PerScheduler._all.append(self)

    @classmethod
    def renew_all(cls, client: Client) -> None:
        """Set everything up again on the client's new scheduler (what it had before)."""
        for setup in list(cls._all):
            setup.renew(client)
