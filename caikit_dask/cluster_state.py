"""What the scheduler knows about its workers, read the one way that sees them all.

``Client.scheduler_info()`` listed only the first five workers unless asked with
``n_workers=-1`` (the default changed across distributed versions); reading
through here asks for all of them, in one place. The answer is taken from the call
itself, not from the client's cached copy, which the client's own periodic refresh
overwrites with a worker-less identity (``n_workers=0``) at any moment.
"""

from __future__ import annotations

import asyncio
from typing import Any

from distributed import Client


def workers(client: Client) -> dict[str, dict[str, Any]]:
    """Every worker the scheduler knows: address -> its info (resources, name, ...)."""
    return client.sync(_identity, client)["workers"]


async def _identity(client: Client) -> dict[str, Any]:
    # A cancelled request is an OSError here: ``client.sync`` only passes on Exceptions,
    # and fails with UnboundLocalError on the CancelledError a closing comm raises.
    try:
        return await client.scheduler.identity(n_workers=-1)
    except asyncio.CancelledError:
        raise OSError("the request for the scheduler's workers was cancelled") from None


def worker_resources(client: Client) -> dict[str, dict[str, float]]:
    """Every worker's declared resources (``{GPU: 1}``), by address."""
    return {address: info.get("resources") or {} for address, info in workers(client).items()}
