"""One Dask client per distinct ``connection`` mapping, shared and ref-counted.

A caikit runtime typically configures a trainer and an initializer with the same
``connection``; both must talk to the cluster through one client (and one
embedded LocalCluster), which is opened on the first ``acquire`` and closed on
the last ``release``.
"""

from __future__ import annotations

import contextlib
import threading
import traceback
from collections.abc import Callable
from typing import Any

import alog
from distributed import Client, LocalCluster
from distributed.security import Security
from distributed.utils import import_term

from . import scheduler_view
from .config import ConnectionConfig
from .dask_internals import stop_loop_runner
from .errors import DaskBackendError, DaskConfigError, error
from .formatting import seconds
from .per_client import PerClient

log = alog.use_channel("DASK-CONN")

# No ``host``: LocalCluster already binds 127.0.0.1 over tcp, and a host would break the
# in-process (``processes: false``, inproc://) cluster.
_LOCAL_DEFAULTS = {
    "n_workers": 2,
    "threads_per_worker": 1,
    "processes": True,
    "dashboard_address": "127.0.0.1:0",
}


def _close_half_built_client(err: BaseException) -> None:
    """Stop the event-loop thread of a Client whose constructor raised.

    The traceback keeps the half-built Client alive; if the garbage collector
    finalises it later while another Client starts on the same thread, both wait
    on distributed's loop-runner lock forever. Close it now and drop the frames.
    """
    for frame, _ in traceback.walk_tb(err.__traceback__):
        if frame.f_code is Client.__init__.__code__:
            half_built = frame.f_locals.get("self")
            if half_built is not None:
                with contextlib.suppress(Exception):
                    half_built.close(timeout=2)
                with contextlib.suppress(Exception):
                    stop_loop_runner(half_built)
    traceback.clear_frames(err.__traceback__)


class DaskConnection:
    """A lazily opened, shared handle on a Dask cluster."""

    _shared: dict[str, DaskConnection] = {}
    _shared_lock = threading.Lock()
    # What closes with a client (see ``on_close``), per client.
    _close_callbacks: PerClient[list[Callable[[bool], None]]] = PerClient(lambda _: [])

    def __init__(self, config: ConnectionConfig):
        self.config = config
        self._lock = threading.RLock()
        self._users = 0
        self._client: Client | None = None
        self._cluster: Any = None
        self._owns_client = False
        self._loss_logged = False

    @classmethod
    def from_config(cls, mapping: Any) -> DaskConnection:
        """The shared connection for this mapping (validated here, opened later)."""
        config = (
            mapping
            if isinstance(mapping, ConnectionConfig)
            else ConnectionConfig.from_mapping(mapping)
        )
        key = config.sharing_key()
        with cls._shared_lock:
            if key not in cls._shared:
                cls._shared[key] = cls(config)
            return cls._shared[key]

    @classmethod
    def on_close(cls, client: Client, callback: Callable[[bool], None]) -> None:
        """Run ``callback(cluster_closes)`` just before a connection closes ``client``.

        What a feature keeps on a client (event subscriptions, published datasets)
        closes with it, without the connection knowing what it is. ``cluster_closes``
        is True when the connection's embedded cluster goes too. A client no connection
        opened (a borrowed current client, a user's own) is never closed here, so its
        callbacks never run.
        """
        cls._close_callbacks.get(client).append(callback)

    @classmethod
    def _run_close_callbacks(cls, client: Client, cluster_closes: bool) -> None:
        callbacks = cls._close_callbacks.pop(client) or []
        for callback in callbacks:
            try:
                callback(cluster_closes)
            except Exception as err:  # noqa: BLE001 - closing goes on whatever they raise
                log.debug("A close callback of %s failed: %r", client, err)

    @classmethod
    def close_all(cls) -> None:
        """Close every shared connection (at interpreter exit, or between test sessions)."""
        with cls._shared_lock:
            connections, cls._shared = list(cls._shared.values()), {}
        for connection in connections:
            connection.close()

    # -- lifecycle -------------------------------------------------------------------------

    def acquire(self) -> Client:
        """Open (once) and count a user; pair every call with ``release``."""
        with self._lock:
            client = self.client
            self._users += 1
            return client

    def release(self) -> None:
        """Drop a user; the last one closes what this connection opened."""
        with self._lock:
            self._users = max(0, self._users - 1)
            if self._users == 0:
                self.close()

    def close(self) -> None:
        """Close the client and any cluster this connection started (never a borrowed one)."""
        with self._lock:
            client, cluster, owned = self._client, self._cluster, self._owns_client
            self._client, self._cluster, self._owns_client = None, None, False
        if client is not None and owned:
            self._run_close_callbacks(client, cluster_closes=cluster is not None)
            client.close()
        if cluster is not None:
            cluster.close()

    @property
    def is_open(self) -> bool:
        return self._client is not None and self._client.status not in ("closed", "closing")

    @property
    def client(self) -> Client:
        """The client, opened on first use (a closed borrowed client is looked up again)."""
        self.raise_if_unreachable()
        with self._lock:
            if not self.is_open:
                self._client, self._cluster, self._owns_client = self._open()
                scheduler_view.install(self._client)  # /caikit-dask and its metrics
            return self._client

    @property
    def scheduler_address(self) -> str:
        """Where the scheduler is (or is expected), for error messages."""
        if self._client is not None and self._client.scheduler is not None:
            return self._client.scheduler.address
        return self.config.address or self.config.scheduler_file or "the embedded cluster"

    def raise_if_unreachable(self) -> None:
        """Fail fast, naming the scheduler, while the client has lost it.

        distributed's client keeps reconnecting for ``timeout`` seconds and then
        closes; a closed client is replaced on the next ``client`` access.
        """
        client = self._client
        if client is not None and client.status not in ("running", "closed", "closing"):
            error(
                "<DSK10000004E>",
                DaskBackendError(
                    f"The Dask scheduler at {self.scheduler_address} is unreachable "
                    f"(client {client.status}); it is retried for connection.timeout="
                    f"{seconds(self.config.connect_timeout)}. Check that the scheduler is up."
                ),
            )

    @property
    def open_client(self) -> Client | None:
        """The client if open, else None: for background work, which never (re)opens one."""
        client = self._client
        return client if client is not None and client.status not in ("closed", "closing") else None

    def lost(self) -> bool:
        """Whether the open client has lost the scheduler; logged once per loss.

        For background checks, which run once per loaded model: ``raise_if_unreachable``
        logs an error each time it raises, which is right for a caller's call only.
        """
        client = self._client
        lost = client is not None and client.status not in ("running", "closed", "closing")
        if lost and not self._loss_logged:
            log.error(
                "<DSK10000005E>",
                "The Dask scheduler at %s is unreachable (client %s); calls fail until "
                "the client reconnects. Check that the scheduler is up.",
                self.scheduler_address,
                client.status,
            )
        self._loss_logged = lost
        return lost

    @property
    def dashboard_link(self) -> str | None:
        return self._client.dashboard_link if self._client is not None else None

    # -- opening ---------------------------------------------------------------------------

    def _open(self) -> tuple[Client, Any, bool]:
        config = self.config
        if config.address or config.scheduler_file:
            return self._connect(config.address, scheduler_file=config.scheduler_file), None, True
        if config.cluster is not None:
            cluster = self._build_cluster()
            return self._connect(cluster), cluster, True
        if config.use_current_client:
            try:
                current = Client.current(allow_global=True)
            except ValueError:
                current = None
            if current is not None and current.status == "running":
                log.info("Using the current Dask client at %s", current.scheduler.address)
                return current, None, False
        local_kwargs = {**_LOCAL_DEFAULTS, **config.local}
        log.info("Starting an embedded LocalCluster with %s", local_kwargs)
        cluster = LocalCluster(**local_kwargs)
        return self._connect(cluster), cluster, True

    def _security(self) -> Security | None:
        if not self.config.security:
            return None
        return Security(**self.config.security)

    def _connect(self, target: Any, scheduler_file: str | None = None) -> Client:
        timeout = self.config.connect_timeout
        kwargs: dict[str, Any] = {
            "timeout": timeout,
            "set_as_default": False,
            "direct_to_workers": self.config.direct_to_workers,
        }
        security = self._security()
        if security is not None:
            kwargs["security"] = security
        where = scheduler_file or getattr(target, "scheduler_address", target)
        try:
            return Client(target, scheduler_file=scheduler_file, **kwargs)
        except Exception as err:  # noqa: BLE001 - every connect failure is reported the same way
            _close_half_built_client(err)
            error(
                "<DSK10000002E>",
                DaskBackendError(
                    f"Could not reach the Dask scheduler at {where} within "
                    f"{seconds(timeout)} ({type(err).__name__}: {err}). Check that the "
                    "scheduler is running and that connection.address / scheduler_file "
                    "and connection.security are right."
                ),
            )

    def _build_cluster(self) -> Any:
        spec = self.config.cluster
        try:
            cluster_class = import_term(spec.class_path)
        except (ImportError, AttributeError) as err:
            error(
                "<DSK10000003E>",
                DaskConfigError(
                    f"Invalid config connection.cluster.class: cannot import "
                    f"{spec.class_path!r} ({err}). Install the package that provides it "
                    "(e.g. caikit-dask[kubernetes] for dask_kubernetes)."
                ),
            )
        if spec.is_kubernetes:
            from .kubernetes import build_kube_cluster

            cluster = build_kube_cluster(cluster_class, dict(spec.kwargs))
        else:
            cluster = cluster_class(**spec.kwargs)
        if spec.adapt is not None:
            cluster.adapt(**spec.adapt)
        return cluster

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        where = self._client.scheduler.address if self.is_open else "not connected"
        return f"<DaskConnection {state} {where} users={self._users}>"
