"""The physical floor of a call between two processes on this machine.

Two processes, one blocking loopback TCP socket, a small pickle each way (the request
and the answer, length-prefixed): no framework at all. Whatever a proxy call costs above
this is software. ``python -m benchmarks.floor`` is the serving side: it prints its port,
then echoes each request unpickled and pickled again until the client goes.
"""

from __future__ import annotations

import pickle
import socket
import struct
import subprocess
import sys
from typing import Any

_LENGTH = struct.Struct("!I")


def _read(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return bytes(data)


def _serve() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        print(server.getsockname()[1], flush=True)
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            try:
                while True:
                    (size,) = _LENGTH.unpack(_read(conn, _LENGTH.size))
                    answer = pickle.dumps(pickle.loads(_read(conn, size)), protocol=5)
                    conn.sendall(_LENGTH.pack(len(answer)) + answer)
            except ConnectionError:
                return


class Floor:
    """The client end: ``call()`` is one round trip; ``close()`` ends the serving process."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.floor"], stdout=subprocess.PIPE, text=True
        )
        port = int(self._process.stdout.readline())
        self._sock = socket.create_connection(("127.0.0.1", port))
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._request = ("run", ("hello",), {})

    def call(self) -> Any:
        request = pickle.dumps(self._request, protocol=5)
        self._sock.sendall(_LENGTH.pack(len(request)) + request)
        (size,) = _LENGTH.unpack(_read(self._sock, _LENGTH.size))
        return pickle.loads(_read(self._sock, size))

    def close(self) -> None:
        self._sock.close()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(10)


if __name__ == "__main__":
    _serve()
