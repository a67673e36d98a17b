"""The worker side of the direct call path: one listener per worker process.

Dask's actor RPC costs two event-loop hops and Dask's framing per call; here a proxy's
calls arrive over a persistent socket (frames of ``wire.framing``) and a reader thread
per connection hands each to its actor, which runs it exactly as a Dask actor call
(the same queue, pool, concurrency limit and outcome bytes). Dask stays the control
plane: actors are placed, health-checked and released through it, and an actor's
token, which a call must carry, only travels through it.

The listener starts with the first actor of the process, on the dask config port
``caikit_dask.call-port`` (0: any free one) of the worker's own host, and is shared
by every actor there. When the cluster uses TLS it takes its context from the
worker's ``Security`` (the worker role: same CA, client certificates required), so it
is no more open than the worker's Dask port; without TLS where ``require_encryption``
is set it does not listen at all. A peer that sends garbage loses its connection;
one that goes away mid-call leaves no open stream or stoppable call behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import socket
import ssl
import threading
import time
import uuid
import weakref
from typing import Any

import dask.config

from ...errors import log
from ..wire.framing import (
    GONE,
    HEADER,
    NEXT_CHUNK,
    OPEN_STREAM,
    OUTCOME,
    REQUESTS,
    RUN,
    RUN_STOPPABLE,
    TOKEN_SIZE,
    FrameError,
    frame,
    parse_header,
)
from ..wire.protocol import failed_outcome

PORT_KEY = "caikit_dask.call-port"
MAX_CONNECTIONS = 512  # callers' processes one worker process serves at once
SLICE = 0.002  # seconds a call runs in a reader thread before another thread reads
_READ_BUFFER = 256 * 1024
HANDSHAKE_TIMEOUT = 10.0
_STREAMS_PRUNED_AT = 1024  # stream ids a connection remembers before forgetting ended ones

_lock = threading.Lock()
_listener: Listener | None = None
_refusals_logged: set[str] = set()


def register(actor: Any) -> dict:
    """Make ``actor`` reachable over this process's listener (started on first use).

    Returns what the proxy needs: ``{"address", "token"}``, or ``{"address": None,
    "why": ...}`` when there is no listener (the proxy then uses the actor RPC).
    """
    global _listener
    with _lock:
        if _listener is None:
            try:
                _listener = Listener.start()
            except Exception as err:  # noqa: BLE001 - reported to the proxy, which falls back
                return {"address": None, "why": str(err)}
        return _listener.add(actor)


def refused_once(reason: str, detail: str) -> None:
    """Log a refused connection: the first of each reason as a warning, the rest quietly."""
    if reason in _refusals_logged:
        log.debug("Direct call connection refused (%s): %s", reason, detail)
        return
    _refusals_logged.add(reason)
    log.warning("<DSK50000031W>", "Direct call connection refused (%s): %s", reason, detail)


class Listener:
    """A listening socket, its accept thread, and the actors calls may name."""

    def __init__(self, sock: socket.socket, address: str, ssl_context: Any, loop: Any):
        self.sock, self.address, self.ssl_context, self.loop = sock, address, ssl_context, loop
        # Which listener this is: a port freed by a process that ended can be bound again by
        # another, and a caller's connection to the old one must not be taken for the new.
        self.identity = uuid.uuid4().hex
        self.actors: weakref.WeakValueDictionary[bytes, Any] = weakref.WeakValueDictionary()
        self.connections = 0
        self._open: set[_Connection] = set()
        self._count_lock = threading.Lock()
        self._watching = threading.Event()
        threading.Thread(target=self._accept, name="caikit-dask-calls", daemon=True).start()
        threading.Thread(target=self._watch, name="caikit-dask-call-watch", daemon=True).start()

    @classmethod
    def start(cls) -> Listener:
        from distributed import get_worker
        from distributed.comm.addressing import get_address_host, parse_address

        try:
            worker = get_worker()
        except ValueError:
            raise RuntimeError("the actor does not run on a Dask worker") from None
        scheme, _ = parse_address(worker.address)
        if scheme not in ("tcp", "tls"):
            raise RuntimeError(f"the worker listens on {scheme}://, not TCP")
        listen = worker.security.get_listen_args("worker")
        ssl_context = listen.get("ssl_context")
        if ssl_context is None and (listen.get("require_encryption") or scheme == "tls"):
            raise RuntimeError("the cluster requires encryption but the worker has no TLS context")
        port = _configured_port()
        host = get_address_host(worker.address)
        sock = socket.create_server((host, port), backlog=128, reuse_port=False)
        bound = sock.getsockname()[1]
        address = f"{'tls' if ssl_context is not None else 'tcp'}://{host}:{bound}"
        log.info("<DSK50000032I>", "Direct calls to this worker's models listen on %s", address)
        return cls(sock, address, ssl_context, worker.loop.asyncio_loop)

    def add(self, actor: Any) -> dict:
        token = uuid.uuid4().bytes
        self.actors[token] = actor
        return {"address": self.address, "listener": self.identity, "token": token}

    def _accept(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:  # closed at process exit
                return
            with self._count_lock:
                full = self.connections >= MAX_CONNECTIONS
                if not full:
                    self.connections += 1
            if full:
                refused_once("too many connections", f"{peer} over {MAX_CONNECTIONS}")
                conn.close()
                continue
            threading.Thread(
                target=self._serve, args=(conn, peer), name="caikit-dask-call-reader", daemon=True
            ).start()

    def _serve(self, conn: socket.socket, peer: Any) -> None:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                conn.settimeout(HANDSHAKE_TIMEOUT)
                try:
                    conn = self.ssl_context.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError) as err:
                    refused_once("TLS handshake failed", f"{peer}: {err}")
                    self.left(conn, None)
                    return
                conn.settimeout(None)
        except OSError:
            self.left(conn, None)
            return
        connection = _Connection(self, conn, peer)
        with self._count_lock:
            self._open.add(connection)
        connection.read(0)

    def left(self, conn: socket.socket, connection: _Connection | None) -> None:
        """A connection ended: stop what its caller left running, free its place."""
        if connection is not None:
            connection.leave()
        with contextlib.suppress(OSError):
            conn.close()
        with self._count_lock:
            self.connections -= 1
            self._open.discard(connection)

    def inline_started(self) -> None:
        if not self._watching.is_set():
            self._watching.set()

    def _watch(self) -> None:
        """While calls run in reader threads, every SLICE: a call that has run longer
        hands its connection's reading to a new thread, so it holds up no other call."""
        idle_since = time.monotonic()
        while True:
            self._watching.wait()
            time.sleep(SLICE)
            now, inline = time.monotonic(), False
            with self._count_lock:
                connections = list(self._open)
            for connection in connections:
                since = connection.inline_since
                if since is not None:
                    inline = True
                    if now - since >= SLICE:
                        connection.take_over()
            if inline:
                idle_since = now
            elif now - idle_since > 1.0:
                self._watching.clear()


class _Connection:
    """One caller process's socket: reads requests, writes outcomes (from any thread).

    One thread reads at a time. It runs a call of a model whose calls are quick itself
    (no thread switch), and holds those answers until it has run every request already
    received, so concurrent calls cost one ``recv`` and one ``sendall`` for many; if a
    call runs long, the listener's watcher sends what is held and starts another reader
    (``take_over``), and the first leaves once its call is done.
    """

    def __init__(self, listener: Listener, sock: socket.socket, peer: Any):
        self.listener, self.sock, self.peer = listener, sock, peer
        self._buffer = bytearray()
        self._send_lock = threading.Lock()
        self._held: list[bytes] = []  # answers of calls run in the reader, not sent yet
        self._role = threading.Lock()
        self._generation = 0  # which reader thread reads
        self.reader = 0  # its thread id
        self.inline_since: float | None = None
        self.streams: set[tuple[bytes, int]] = set()
        self.stoppable: dict[int, tuple[bytes, str]] = {}

    def read(self, generation: int) -> None:
        """The reader thread's loop, until the caller goes or another reader takes over."""
        self.reader = threading.get_ident()
        try:
            self._read(generation)
        except FrameError as err:
            refused_once("bad frame", f"{self.peer}: {err}")
        except (OSError, EOFError, ValueError):
            pass  # the caller went away
        else:
            return  # another reader took over
        self.listener.left(self.sock, self)

    def _next_frame(self) -> tuple[int, int, bytes] | None:
        """A complete request from the buffer, or None; a bad header raises at once."""
        buffer = self._buffer
        if len(buffer) < HEADER.size:
            return None
        kind, length, request_id = parse_header(buffer[: HEADER.size], REQUESTS)
        if length < TOKEN_SIZE:
            raise FrameError(f"request of {length} bytes has no actor token")
        end = HEADER.size + length
        if len(buffer) < end:
            return None
        body = bytes(buffer[HEADER.size : end])
        del buffer[:end]
        return kind, request_id, body

    def _read(self, generation: int) -> None:
        actors, sock = self.listener.actors, self.sock
        chunk = memoryview(bytearray(_READ_BUFFER))
        while True:
            request = self._next_frame()
            if request is None:
                actor = None  # while idle, hold no model alive (its release must free it)
                self.flush()  # every request received has run or left: answer them
                count = sock.recv_into(chunk)  # into a reused buffer: no allocation per read
                if not count:
                    raise EOFError("the caller closed the connection")
                self._buffer += chunk[:count]
                continue
            kind, request_id, body = request
            token = body[:TOKEN_SIZE]
            actor = actors.get(token)
            if actor is None:
                self.send(GONE, request_id, b"the model's actor is gone from this worker")
                continue
            payload = body[TOKEN_SIZE:]
            if kind == RUN:
                if actor.run_direct(payload, _Reply(self, request_id), self):
                    with self._role:  # it ran here: still the reader?
                        if self._generation != generation:
                            return
                        self.inline_since = None
            else:
                self._on_loop(kind, request_id, token, actor, payload)

    def answer(self, request_id: int, outcome: bytes) -> None:
        """A unary call's outcome: held by the reader that ran it, else sent now."""
        if threading.get_ident() == self.reader:
            data = frame(OUTCOME, request_id, outcome)
            with self._send_lock:
                self._held.append(data)
        else:
            self.send(OUTCOME, request_id, outcome)

    def flush(self) -> None:
        """Send the answers held, in one write."""
        if self._held:
            with contextlib.suppress(OSError), self._send_lock:
                held, self._held = self._held, []
                self.sock.sendall(b"".join(held))

    def run_here(self) -> None:
        """Called by the actor as it runs a call in this reader thread."""
        self.inline_since = time.monotonic()
        self.listener.inline_started()

    def take_over(self) -> None:
        """From the watcher: the reader is held by a long call; start another one."""
        with self._role:
            if self.inline_since is None:
                return
            self.inline_since = None
            self._generation += 1
            generation = self._generation
            self.reader = 0  # the long call's answer is sent as it ends
        self.flush()  # what the held reader ran before it
        threading.Thread(
            target=self.read, args=(generation,), name="caikit-dask-call-reader", daemon=True
        ).start()

    def _on_loop(
        self, kind: int, request_id: int, token: bytes, actor: Any, payload: bytes
    ) -> None:
        """The actor's own async methods, on the worker's event loop as Dask runs them."""
        try:
            args = pickle.loads(payload)
        except Exception as err:  # noqa: BLE001 - a broken peer
            raise FrameError(f"unreadable arguments: {err!r}") from None
        if kind == RUN_STOPPABLE:
            self.stoppable[request_id] = (token, args[0])
            work = actor.run_stoppable(*args)
        elif kind == OPEN_STREAM:
            work = actor.open_stream(*args)
        elif kind == NEXT_CHUNK:
            work = actor.next_chunk(*args)
        else:  # CLOSE_STREAM
            self.streams.discard((token, args))
            work = _none_outcome(actor.close_stream(args))
        future = asyncio.run_coroutine_threadsafe(work, self.listener.loop)
        future.add_done_callback(lambda done: self._answered(kind, request_id, token, actor, done))

    def _answered(self, kind: int, request_id: int, token: bytes, actor: Any, done: Any) -> None:
        try:
            outcome = done.result()
        except BaseException as err:  # noqa: BLE001 - the caller must hear
            outcome = failed_outcome(RuntimeError(f"The call was ended by {err!r}"))
        self.stoppable.pop(request_id, None)
        if kind == OPEN_STREAM:
            self._opened(token, actor, outcome)
        self.send(OUTCOME, request_id, outcome)

    def _opened(self, token: bytes, actor: Any, outcome: bytes) -> None:
        """Remember an open stream, to close it if the caller goes away."""
        with contextlib.suppress(Exception):
            ok, value = pickle.loads(outcome)[:2]
            if ok and not value[2]:
                if len(self.streams) >= _STREAMS_PRUNED_AT:
                    actors = self.listener.actors
                    self.streams = {s for s in self.streams if _has_stream(actors, s)}
                self.streams.add((token, value[0]))

    def send(self, kind: int, request_id: int, body: bytes) -> None:
        """Write one answer (and any held); a caller gone away is not an error here."""
        data = frame(kind, request_id, body)
        with contextlib.suppress(OSError), self._send_lock:
            if self._held:
                held, self._held = self._held, []
                data = b"".join([*held, data])
            self.sock.sendall(data)

    def leave(self) -> None:
        """The caller is gone: stop what it left (queued calls, stoppable calls, open streams)."""
        actors = self.listener.actors
        for actor in list(actors.values()):
            actor.drop_direct(self)
        for token, call_id in list(self.stoppable.values()):
            actor = actors.get(token)
            if actor is not None:
                actor.cancel(call_id)
        for token, stream_id in list(self.streams):
            actor = actors.get(token)
            if actor is not None:
                asyncio.run_coroutine_threadsafe(actor.close_stream(stream_id), self.listener.loop)


class _Reply:
    """Answers one unary call from the pool thread that ran it."""

    __slots__ = ("connection", "request_id")

    def __init__(self, connection: _Connection, request_id: int):
        self.connection, self.request_id = connection, request_id

    def __call__(self, outcome: bytes) -> None:
        self.connection.answer(self.request_id, outcome)


def _has_stream(actors: Any, stream: tuple[bytes, int]) -> bool:
    actor = actors.get(stream[0])
    return actor is not None and actor.has_stream(stream[1])


async def _none_outcome(closing: Any) -> bytes:
    from ..wire.protocol import run_as_outcome

    await closing
    return run_as_outcome(lambda: None)


def _configured_port() -> int:
    port = dask.config.get(PORT_KEY, 0)
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(
            f"Dask config {PORT_KEY}={port!r} is not a port: set it to a number from 1 to "
            "65535 in the workers' dask config (DASK_CAIKIT_DASK__CALL_PORT=8788), or 0 "
            "for any free port."
        )
    return port
