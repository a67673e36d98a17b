"""Baseline workloads: what the proxy is compared against.

``RawEcho`` is a plain ``distributed`` actor with a trivial method, the floor a
Dask-actor-based proxy cannot beat. It lives in an importable module so
workers unpickle it by reference.
"""

from __future__ import annotations


class RawEcho:
    """A plain Dask actor: one synchronous and one ``async`` trivial method."""

    def ping(self, value):
        return value

    async def aping(self, value):
        return value
