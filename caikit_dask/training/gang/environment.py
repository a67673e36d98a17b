"""A rank's process environment, the torch.distributed way, and putting the process back.

``torch.distributed.init_process_group()`` (``env://``), transformers' ``Trainer``
and accelerate read ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT``, as ``torchrun`` sets them; with them set, a
module's ``train`` needs no code of ours. They are process-wide, and a worker
process runs many tasks, so a rank sets them for the length of its training and
then restores the environment as it was. torch's default process group and
accelerate's state are process-wide singletons too: a rank ends them when it ends
(a peer blocked in a collective is freed by it), and clears accelerate's state
before it starts (a Trainer run earlier in the process would otherwise keep its
single-process state for this one).
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import sys
import traceback
from collections.abc import Iterator

from distributed.comm.addressing import get_address_host

VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def rank_environment(rank: int, workers: list[str], master_port: int) -> dict[str, str]:
    """The variables of ``rank`` in a gang whose rank ``i`` runs on ``workers[i]``.

    ``LOCAL_*`` count the ranks on the same host (workers whose addresses share a
    host); ``MASTER_ADDR`` is rank 0's host as the scheduler and the other workers
    reach it (its address), ``MASTER_PORT`` the port rank 0 found free there.
    """
    hosts = [get_address_host(worker) for worker in workers]
    neighbours = [other for other, host in enumerate(hosts) if host == hosts[rank]]
    return {
        "RANK": str(rank),
        "WORLD_SIZE": str(len(workers)),
        "LOCAL_RANK": str(neighbours.index(rank)),
        "LOCAL_WORLD_SIZE": str(len(neighbours)),
        "MASTER_ADDR": hosts[0],
        "MASTER_PORT": str(master_port),
    }


def free_port(host: str) -> int:
    """A TCP port free on ``host`` now (the OS picks it from its ephemeral range)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.bind(address)
        return probe.getsockname()[1]


@contextlib.contextmanager
def process_environment(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set; afterwards exactly as before (also undoing
    what the training itself set or removed)."""
    before = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        for name in [name for name in os.environ if name not in before]:
            del os.environ[name]
        for name, value in before.items():
            if os.environ.get(name) != value:
                os.environ[name] = value


def end_process_group(*errors: BaseException | None) -> None:
    """End torch's default process group, if the training left one, so that peers blocked
    in a collective with this rank fail at once instead of waiting for gloo's timeout.

    Destroying the group is not enough while anything still holds it (torch 2.8, gloo:
    ``destroy_process_group``, the backend's ``shutdown`` and ``abort`` leave its sockets
    open; a peer waits until the object is freed): a DDP module in the training's frames
    does, kept by its exception's traceback. So the locals of those ``errors``' frames
    are cleared (their tracebacks keep file and line) and garbage collected. Nothing
    happens unless torch is imported.
    """
    torch = sys.modules.get("torch")
    distributed = getattr(torch, "distributed", None)
    if distributed is None or not distributed.is_available():
        return
    for error in errors:
        _clear_frames(error)
    if distributed.is_initialized():
        with contextlib.suppress(Exception):  # a group already broken by a peer's end
            distributed.destroy_process_group()
    gc.collect()


def _clear_frames(error: BaseException | None, seen: set[int] | None = None) -> None:
    """Drop the locals of the finished frames behind ``error`` (and its causes)."""
    seen = set() if seen is None else seen
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        with contextlib.suppress(RuntimeError):  # a frame still executing keeps its locals
            traceback.clear_frames(error.__traceback__)
        _clear_frames(error.__cause__, seen)
        error = error.__context__


def reset_accelerate_state() -> None:
    """Forget accelerate's process-wide state (``PartialState`` and the accelerator's),
    which caches the world it was first made in; only if accelerate is imported.

    ``_reset_state`` is what accelerate's own tests call between runs in one process.
    """
    state = sys.modules.get("accelerate.state")
    if state is None:
        return
    with contextlib.suppress(Exception):
        state.AcceleratorState._reset_state(reset_partial_state=True)
        state.GradientState._reset_state()
