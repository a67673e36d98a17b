"""Closing, at the OS level, the connections a stopped rank's training left to its peers.

A peer blocked in a gloo collective is freed at once when this rank's end of their
connection closes (gloo raises "Connection closed by peer"). Ending the process group
closes it only if nothing else holds the group: with torch 2.8, a rank that built a
``DistributedDataParallel`` keeps its gloo connections open after the module is gone
and ``destroy_process_group()`` (and the backend's ``shutdown``/``abort``) ran, until the
process exits (measured: the peer waits for the process to end, or for gloo's timeout,
30 minutes by default). So a rank that failed or was stopped shuts down
(``shutdown(SHUT_RDWR)``) every TCP connection its training opened to a host of the
gang, other than Dask's own (the scheduler, workers and nannies the book names, and
this worker's listening ports). The descriptors stay with whatever leaked them; only
the connections end. A rank that finished leaves its connections alone.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from typing import Any

import psutil
from distributed.comm.addressing import get_address_host_port


def _ip(text: str) -> str:
    """``::ffff:127.0.0.1`` as ``127.0.0.1``; any other address as written."""
    with contextlib.suppress(ValueError):
        address = ipaddress.ip_address(text)
        mapped = getattr(address, "ipv4_mapped", None)
        return str(mapped or address)
    return text


def _connections() -> list[Any]:
    process = psutil.Process()
    listing = getattr(process, "net_connections", None) or process.connections
    return listing("tcp")


def _endpoint(address: str) -> tuple[str, int] | None:
    with contextlib.suppress(Exception):
        host, port = get_address_host_port(address)
        return _ip(socket.gethostbyname(host)), int(port)
    return None


class TrainingSockets:
    """The TCP sockets of this process when a rank's training starts, to tell apart the
    ones it opened."""

    def __init__(self) -> None:
        self.before = {connection.fd for connection in _connections()}

    def shut_down(
        self, peer_addresses: list[str], dask_addresses: list[str], own_ports: set[int]
    ) -> int:
        """Shut down the connections opened since, to the hosts of ``peer_addresses``,
        except those to ``dask_addresses`` or on ``own_ports`` here; how many."""
        peers = {endpoint[0] for endpoint in map(_endpoint, peer_addresses) if endpoint}
        dask = {endpoint for endpoint in map(_endpoint, dask_addresses) if endpoint}
        shut = 0
        for connection in _connections():
            if connection.fd in self.before or connection.fd < 0 or not connection.raddr:
                continue
            if connection.status != psutil.CONN_ESTABLISHED:
                continue
            remote = (_ip(connection.raddr.ip), connection.raddr.port)
            if remote[0] not in peers or remote in dask or connection.laddr.port in own_ports:
                continue
            with contextlib.suppress(OSError):  # closed meanwhile
                duplicate = socket.socket(fileno=os.dup(connection.fd))
                try:
                    duplicate.shutdown(socket.SHUT_RDWR)
                    shut += 1
                finally:
                    duplicate.close()
        return shut
