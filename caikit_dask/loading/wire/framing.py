"""The frames of the direct call path (``direct_channel`` <-> ``actor.call_listener``).

Both ends send length-prefixed frames over one persistent socket per worker process:
a fixed header (magic, kind, body length, request id), then the body. A request's body
starts with the 16-byte token of the actor it is for (tokens travel only through Dask,
so only a client of the cluster can name an actor), then its payload: for ``RUN`` the
pickled request of ``protocol``, for the others a small pickle of the actor method's
arguments. Every answer carries the request's id and the outcome bytes of ``protocol``
(``OUTCOME``) or, when the actor is not there, a ``GONE`` message. Anything else (a
wrong magic, an unknown kind, a body over ``MAX_FRAME``) is a broken peer: its
connection closes, nothing else does.
"""

from __future__ import annotations

import socket
import struct

MAGIC = b"CD"
HEADER = struct.Struct("!2sBIQ")  # magic, kind, body length, request id
TOKEN_SIZE = 16
# Largest body either end accepts; a bigger request takes the actor RPC instead.
MAX_FRAME = 1 << 30

# Requests (caller -> worker); their bodies start with the actor's token.
RUN = 1  # body: a protocol request; answer: its outcome
RUN_STOPPABLE = 2  # body: pickle((call_id, request))
OPEN_STREAM = 3  # body: pickle((request, first))
NEXT_CHUNK = 4  # body: pickle((stream_id, size))
CLOSE_STREAM = 5  # body: pickle(stream_id)
REQUESTS = frozenset({RUN, RUN_STOPPABLE, OPEN_STREAM, NEXT_CHUNK, CLOSE_STREAM})
# Answers (worker -> caller).
OUTCOME = 16  # body: outcome bytes (see ``protocol``)
GONE = 17  # body: why the actor cannot take the call (utf-8)


class FrameError(ConnectionError):
    """The peer sent something that is not a frame of this protocol."""


def frame(kind: int, request_id: int, body: bytes) -> bytes:
    return HEADER.pack(MAGIC, kind, len(body), request_id) + body


def parse_header(header: bytes | bytearray | memoryview, allowed: frozenset[int]) -> tuple:
    """(kind, body length, request id), or FrameError naming what is wrong."""
    magic, kind, length, request_id = HEADER.unpack(header)
    if magic != MAGIC:
        raise FrameError(f"not a caikit-dask call frame (starts {bytes(magic)!r})")
    if kind not in allowed:
        raise FrameError(f"unknown frame kind {kind}")
    if length > MAX_FRAME:
        raise FrameError(f"frame of {length} bytes is over the limit of {MAX_FRAME}")
    return kind, length, request_id


def read_exactly(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes from a blocking socket; ConnectionError if it closes first."""
    if size == 0:
        return b""
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        count = sock.recv_into(view[got:], size - got)
        if count == 0:
            raise ConnectionError("connection closed by the peer")
        got += count
    return bytes(buffer)
