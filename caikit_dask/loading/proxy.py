"""Proxy modules: what the caller holds instead of the model.

For each module class a ``ModuleBase`` subclass is generated with the same
MODULE_ID, name, version, tasks and inference signatures, so caikit (and
``caikit.runtime``) treat it as the module; every task method forwards to the
model's actors. The proxy holds no weights.
"""

from __future__ import annotations

import contextlib
import copyreg
import functools
import html
import threading
from typing import Any, NoReturn

from caikit.core.data_model import DataStream
from caikit.core.modules import ModuleBase

from ..errors import error
from ..module_identity import MODULE_IDENTITY_ATTRIBUTES
from .calls.batch import check_method, map_inputs
from .calls.retrying import call
from .calls.streams import stream
from .publishing import publish, unpublish
from .replicas.replica_set import ReplicaSet
from .upkeep.releasing import close
from .wire.protocol import context_parameters, encode_request, sendable, sendable_call


class _ProxyClass(type(ModuleBase)):
    """The metaclass of proxy classes: a generated class names the served class's module
    and qualname (see ``proxy_class_for``), so pickle sends it as the call that makes it."""


def _reduce_proxy_class(cls: type) -> Any:
    module_class = cls.__dict__.get("module_class")
    if module_class is None:  # DaskModelProxy itself: by name, as any class
        return cls.__qualname__
    return proxy_class_for, (module_class,)


copyreg.pickle(_ProxyClass, _reduce_proxy_class)


class DaskModelProxy(ModuleBase, metaclass=_ProxyClass):
    """Base of the generated proxy classes; see ``proxy_class_for``."""

    BACKEND_TYPE = "DASK"
    _close = staticmethod(close)  # for __del__, which must not use module globals
    module_class: type[ModuleBase]
    unary_methods: frozenset[str] = frozenset()  # task methods returning one result
    forwarded_methods: frozenset[str] = frozenset()  # every task method sent to the actors
    # per method, its runtime context parameters (see ``wire.protocol.context_parameters``)
    context_parameters: dict[str, tuple[tuple[int | None, str], ...]] = {}

    def __init__(self, replicas: ReplicaSet):
        super().__init__()
        self._replicas = replicas
        self.model_path = replicas.spec.source.path
        self.published_as: str | None = None

    def _forward(self, method: str, args: tuple, kwargs: dict, output_streaming: bool) -> Any:
        replicas = self._replicas
        replicas.raise_if_closed()
        args, kwargs = sendable_call(args, kwargs, self.context_parameters.get(method, ()))
        request = encode_request(method, args, kwargs, replicas.spec.max_payload_size)
        if output_streaming:
            return DataStream(lambda: stream(replicas, method, request))
        return call(replicas, method, request)

    def map(
        self,
        inputs: Any,
        method: str = "run",
        *,
        args: tuple = (),
        kwargs: dict | None = None,
        progress: bool = True,
        max_in_flight: int | None = None,
    ) -> Any:
        """``method(input, *args, **kwargs)`` for every input, across the replicas, in order.

        ``inputs``: an iterable, a ``dask.bag.Bag`` (both give a list) or a dask DataFrame
        column (gives a pandas Series with its index and name). A failing input raises
        ``BatchInputError`` naming it. See ``wire.batch``; a module task method named
        ``map`` takes precedence here, and ``DaskModelProxy.map(proxy, ...)`` still works.
        """
        self._replicas.raise_if_closed()
        check_method(type(self).module_class, self.unary_methods, method)
        return map_inputs(
            self._replicas,
            method,
            inputs,
            tuple(sendable(value) for value in args),
            {name: sendable(value) for name, value in (kwargs or {}).items()},
            progress,
            max_in_flight,
            label=f"{self.module_class.__name__}.{method}",
        )

    def close(self) -> None:
        """Release the actors now (also done when the proxy is garbage-collected).

        A model this proxy published is unpublished too; a proxy that attached to a
        published model only drops its own handles.
        """
        if self.published_as is not None:
            with contextlib.suppress(Exception):  # the scheduler may be gone
                unpublish(self._replicas.client, self.published_as)
            self.published_as = None
        close(self._replicas)

    def publish(self, name: str) -> str:
        """Keep the model's actors reachable by ``name`` from other processes.

        ``DaskBackend.attach(name)`` in another process (a restarted runtime) gets a
        proxy on the same actors; they live until this proxy closes or
        ``DaskBackend.unpublish(name)``.
        """
        self.published_as = publish(self._replicas, name)
        return self.published_as

    def __del__(self) -> None:
        # No module globals here: at interpreter exit they may already be None.
        replicas = getattr(self, "_replicas", None)
        if replicas is not None and not replicas.closed:
            try:  # noqa: SIM105 - contextlib may be gone at interpreter exit
                type(self)._close(replicas)
            except Exception:  # noqa: BLE001, S110 - interpreter or client shutting down
                pass

    def save(self, *args: Any, **kwargs: Any) -> NoReturn:
        error(
            "<DSK60000002E>",
            NotImplementedError(
                f"A DASK-loaded model lives on the workers; save it from its source "
                f"path {self.model_path} instead of through the proxy"
            ),
        )

    @property
    def replicas(self) -> list[dict[str, Any]]:
        """Where the model's actors live (worker, key, outstanding calls, state: resident,
        evicted or not loaded (lazy), bytes measured)."""
        return self._replicas.describe()

    def __repr__(self) -> str:
        replicas = self.replicas
        resident = [r for r in replicas if r["state"] == "resident"]
        where = ", ".join(r["worker"] for r in resident) or "no live replicas"
        state = "closed" if self._replicas.closed else f"{len(resident)} replica(s)"
        if len(replicas) > len(resident) and not self._replicas.closed:
            state += f", {len(replicas) - len(resident)} {replicas[-1]['state']}"
        return (
            f"<{type(self).__name__} {self.MODULE_NAME} ({self.MODULE_ID}) {state} on [{where}] "
            f"from {self.model_path}>"
        )

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(str(r['worker'] or '-'))}</td>"
            f"<td>{html.escape(str(r['key'] or '-'))}</td>"
            f"<td>{r['outstanding']}</td><td>{_state(r)}</td></tr>"
            for r in self.replicas
        )
        dashboard = self._replicas.client.dashboard_link
        return (
            f"<div><strong>{html.escape(self.MODULE_NAME)}</strong> "
            f"<code>{html.escape(self.MODULE_ID)}</code> served from Dask actors "
            f"({'closed' if self._replicas.closed else f'{len(self.replicas)} replica(s)'})"
            f"<br>model: <code>{html.escape(str(self.model_path))}</code>"
            + (f' &middot; <a href="{html.escape(dashboard)}">dashboard</a>' if dashboard else "")
            + "<table><tr><th>worker</th><th>actor</th><th>outstanding</th><th>state</th></tr>"
            f"{rows}</table></div>"
        )


def _state(replica: dict[str, Any]) -> str:
    if replica["state"] != "resident":
        return replica["state"]
    return "live" if replica["alive"] else "lost"


def replica_set_of(proxy: DaskModelProxy) -> ReplicaSet:
    """The replicas behind a proxy (for callers such as prediction jobs)."""
    return proxy._replicas


_proxy_classes: dict[type, type] = {}
_proxy_classes_lock = threading.Lock()


def proxy_class_for(module_class: type[ModuleBase]) -> type[DaskModelProxy]:
    """The (cached) proxy class mirroring ``module_class``'s identity and task methods."""
    with _proxy_classes_lock:
        if module_class in _proxy_classes:
            return _proxy_classes[module_class]
        attributes: dict[str, Any] = {
            name: getattr(module_class, name) for name in MODULE_IDENTITY_ATTRIBUTES
        }
        attributes["BACKEND_TYPE"] = DaskModelProxy.BACKEND_TYPE
        attributes["SUPPORTED_LOAD_BACKENDS"] = module_class.SUPPORTED_LOAD_BACKENDS
        attributes["module_class"] = module_class
        attributes["__doc__"] = f"Dask proxy of {module_class.__qualname__}: calls go to actors."
        methods = {"run": (False, False)}
        declared_contexts: dict[str, str | None] = {}
        for flavours in module_class._TASK_INFERENCE_SIGNATURES.values():
            for input_streaming, output_streaming, signature in flavours:
                methods[signature.method_name] = (input_streaming, output_streaming)
                declared = getattr(signature, "context_arg", None)
                if declared or signature.method_name not in declared_contexts:
                    declared_contexts[signature.method_name] = declared
        unary, contexts = set(), {}
        for name, (input_streaming, output_streaming) in methods.items():
            original = getattr(module_class, name, None)
            if original is None or original is ModuleBase.run:
                continue
            attributes[name] = _forwarder(name, original, output_streaming)
            found = context_parameters(original, declared_contexts.get(name))
            if found:
                contexts[name] = found
            if not input_streaming and not output_streaming:
                unary.add(name)
        attributes["unary_methods"] = frozenset(unary)
        attributes["context_parameters"] = {
            name: found for name, found in contexts.items() if found
        }
        attributes["forwarded_methods"] = frozenset(name for name in methods if name in attributes)
        proxy_class = type(f"Dask{module_class.__name__}", (DaskModelProxy,), attributes)
        # Where caikit.runtime names a model by its class (``str(type(model))`` in its
        # metering and messages) it sees the served class, as with LOCAL; ``__name__``
        # keeps the Dask prefix, and ``isinstance(model, DaskModelProxy)`` tells them apart.
        proxy_class.__module__ = module_class.__module__
        proxy_class.__qualname__ = module_class.__qualname__
        _proxy_classes[module_class] = proxy_class
        return proxy_class


def _forwarder(name: str, original: Any, output_streaming: bool) -> Any:
    @functools.wraps(original)
    def forward(self: DaskModelProxy, *args: Any, **kwargs: Any) -> Any:
        return self._forward(name, args, kwargs, output_streaming)

    return forward
