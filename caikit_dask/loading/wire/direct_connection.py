"""One persistent connection from this process to a worker process's call listener.

Calls leave straight from the caller's thread (a blocking ``sendall``), not through the
Dask client's event loop. Answers are read leader/follower style: whichever waiting
caller takes the read lock reads frames and hands the others their outcomes, waking
each by its own lock, so a lone caller reads its own answer with no thread switch and
many callers share each ``recv``. When the leader has its answer it passes the lead to
a waiting caller. Every proxy of this process calling models on that worker process
shares the connection (``connection_to``); a broken one fails its calls in flight with
``CommClosedError`` (the retry logic then asks whether the replica died) and the next
call connects again.
"""

from __future__ import annotations

import contextlib
import itertools
import select
import socket
import ssl
import threading
import time

from distributed.comm.core import CommClosedError

from .framing import (
    GONE,
    HEADER,
    MAGIC,
    OUTCOME,
    FrameError,
    parse_header,
)

_ANSWERS = frozenset({OUTCOME, GONE})
_FOLLOWER_WAIT = 0.05  # a follower looks at the read lock at least this often (seconds)
_STALL = 30.0  # a send or a frame half-received for this long breaks the connection
_RECV = 256 * 1024
_INLINE = 64 * 1024  # requests up to this size go out in one sendall with their header


class DirectCall:
    """A call's outcome to come; ``result(timeout)`` reads answers while it waits."""

    __slots__ = ("_connection", "_signal", "_woken", "outcome", "error", "done")

    def __init__(self, connection: DirectConnection):
        self._connection = connection
        self._signal = threading.Lock()
        self._signal.acquire()
        self._woken = False  # whether _signal is released (under the connection's lock)
        self.outcome: bytes | None = None
        self.error: BaseException | None = None
        self.done = False

    def settle(self, outcome: bytes | None = None, error: BaseException | None = None) -> None:
        """Under the connection's lock."""
        if self.done:
            return
        self.outcome, self.error, self.done = outcome, error, True
        self._wake()

    def _wake(self) -> None:
        """Under the connection's lock."""
        if not self._woken:
            self._woken = True
            self._signal.release()

    def abandon(self) -> None:
        """Its caller gave up: an answer that comes later is dropped unread."""
        self._connection.forget(self)

    def result(self, timeout: float) -> bytes:
        """The outcome bytes; TimeoutError after ``timeout`` seconds (the call stays pending)."""
        connection = self._connection
        deadline = time.monotonic() + timeout
        while not self.done:
            if connection.read_lock.acquire(blocking=False):
                try:
                    connection.lead(self, deadline)
                finally:
                    connection.read_lock.release()
                    connection.hand_over()
                if self.done:
                    break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if self._signal.acquire(timeout=min(remaining, _FOLLOWER_WAIT)):
                with connection.state:
                    self._woken = False
        if self.error is not None:
            raise self.error
        return self.outcome


class DirectConnection:
    """A socket to one worker process's listener, its calls in flight, its reader lead."""

    def __init__(self, address: str, ssl_context: ssl.SSLContext | None, timeout: float):
        self.address = address
        host, _, port = address.split("://", 1)[1].rpartition(":")
        sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if ssl_context is not None:
                sock = ssl_context.wrap_socket(sock)
        except BaseException:
            sock.close()
            raise
        sock.settimeout(_STALL)
        self.sock = sock
        self._poll = select.poll()  # not select(): descriptors above 1023 are common in servers
        self._poll.register(sock, select.POLLIN)
        self._tls = ssl_context is not None
        self.state = threading.Lock()  # guards _pending, closed and the calls' wake-ups
        self.read_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queued: list[bytes] = []  # small requests waiting for the thread writing
        self._writing = False
        self._pending: dict[int, DirectCall] = {}
        self._ids = itertools.count(1)
        self._buffer = bytearray()
        self._chunk = memoryview(bytearray(_RECV))  # only the read lock's holder uses it
        self.closed: BaseException | None = None
        self.reads = 0  # recv()s: below the answers read when callers share them

    def request(self, kind: int, token: bytes, payload: bytes) -> DirectCall:
        """Send one request now, from this thread; its answer comes by the returned call."""
        call = DirectCall(self)
        with self.state:
            if self.closed is not None:
                call.settle(error=_lost(self.address, self.closed))
                return call
            request_id = next(self._ids)
            self._pending[request_id] = call
        header = HEADER.pack(MAGIC, kind, len(token) + len(payload), request_id) + token
        try:
            if len(payload) > _INLINE:
                with self._send_lock:
                    self.sock.sendall(header)
                    self.sock.sendall(payload)
            else:
                self._send(header + payload)
        except OSError as err:
            self.break_off(err)
        return call

    def _send(self, data: bytes) -> None:
        """Write ``data``; requests queued meanwhile by other threads leave in one write
        by whichever thread is writing (one ``sendall`` for many concurrent calls)."""
        with self._queue_lock:
            self._queued.append(data)
            if self._writing:
                return
            self._writing = True
        try:
            while True:
                with self._queue_lock:
                    queued, self._queued = self._queued, []
                    if not queued:
                        self._writing = False
                        return
                with self._send_lock:
                    self.sock.sendall(queued[0] if len(queued) == 1 else b"".join(queued))
        except BaseException:
            with self._queue_lock:
                self._writing = False
            raise

    def lead(self, call: DirectCall, deadline: float) -> None:
        """Holding the read lock: read and hand out answers until ``call`` has its own."""
        try:
            while not call.done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._read_answers(min(remaining, _FOLLOWER_WAIT))
        except (OSError, FrameError, ValueError) as err:
            self.break_off(err)

    def _read_answers(self, wait: float) -> None:
        buffer = self._buffer
        if len(buffer) < HEADER.size or len(buffer) < HEADER.size + _body_length(buffer):
            buffered = self._tls and self.sock.pending()  # TLS may hold decrypted bytes
            if not buffered and not self._poll.poll(wait * 1000):
                return
            count = self.sock.recv_into(self._chunk)  # reused: no allocation per read
            self.reads += 1
            if not count:
                raise ConnectionError("the worker closed the connection")
            buffer += self._chunk[:count]
        answers = []
        while len(buffer) >= HEADER.size:
            kind, length, request_id = parse_header(buffer[: HEADER.size], _ANSWERS)
            end = HEADER.size + length
            if len(buffer) < end:
                break
            answers.append((kind, request_id, bytes(buffer[HEADER.size : end])))
            del buffer[:end]
        if answers:
            with self.state:
                for kind, request_id, body in answers:
                    waiting = self._pending.pop(request_id, None)
                    if waiting is None:  # its caller gave up
                        continue
                    if kind == OUTCOME:
                        waiting.settle(outcome=body)
                    else:
                        waiting.settle(error=CommClosedError(body.decode(errors="replace")))

    def forget(self, call: DirectCall) -> None:
        with self.state:
            for request_id, waiting in list(self._pending.items()):
                if waiting is call:
                    del self._pending[request_id]
                    return

    def hand_over(self) -> None:
        """After leading: wake the newest waiting call, to read for the others."""
        with self.state:
            for waiting in reversed(self._pending.values()):
                if not waiting.done:
                    waiting._wake()
                    return

    def break_off(self, err: BaseException) -> None:
        """Fail every call in flight; the pool drops this connection."""
        with self.state:
            if self.closed is not None:
                return
            self.closed = err
            pending, self._pending = self._pending, {}
            for waiting in pending.values():
                waiting.settle(error=_lost(self.address, err))
        with contextlib.suppress(OSError):
            self.sock.close()


def _body_length(buffer: bytearray) -> int:
    return int.from_bytes(buffer[3:7], "big")


def _lost(address: str, err: BaseException) -> CommClosedError:
    return CommClosedError(f"direct call connection to {address} lost: {err}")


_pool: dict[tuple, DirectConnection] = {}
_pool_lock = threading.Lock()


def connection_to(
    address: str, ssl_context: ssl.SSLContext | None, tls_key: tuple, timeout: float
) -> DirectConnection:
    """This process's open connection to ``address`` (one per TLS identity), made if needed."""
    key = (address, tls_key)
    connection = _pool.get(key)
    if connection is not None and connection.closed is None:
        return connection
    with _pool_lock:
        connection = _pool.get(key)
        if connection is None or connection.closed is not None:
            connection = _pool[key] = DirectConnection(address, ssl_context, timeout)
        return connection


def close_all() -> None:
    """Close every pooled connection (tests; interpreter exit closes them anyway)."""
    with _pool_lock:
        connections = list(_pool.values())
        _pool.clear()
    for connection in connections:
        connection.break_off(CommClosedError("closed"))
