"""What a module's ``context`` argument becomes when the call crosses to a worker.

The runtime passes a gRPC ``ServicerContext`` or a FastAPI ``Request``; neither
can be pickled. The worker receives a ``ForwardedContext`` carrying the request
metadata (gRPC invocation metadata or HTTP headers), which is what modules use
a context for. Aborting the RPC from the module is not possible from a worker.
"""

from __future__ import annotations

from typing import Any


class ForwardedContext:
    """A picklable stand-in for a gRPC context or an HTTP request."""

    def __init__(self, metadata: dict[str, str], kind: str):
        self.metadata = metadata
        self.kind = kind

    @classmethod
    def from_runtime(cls, context: Any) -> ForwardedContext | None:
        if context is None or isinstance(context, ForwardedContext):
            return context
        invocation_metadata = getattr(context, "invocation_metadata", None)
        if callable(invocation_metadata):
            pairs = invocation_metadata() or ()
            return cls({item[0]: item[1] for item in pairs}, "grpc")
        headers = getattr(context, "headers", None)
        if headers is not None:
            return cls(dict(headers.items()), "http")
        return cls({}, type(context).__name__)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC-style accessor."""
        return tuple(self.metadata.items())

    @property
    def headers(self) -> dict[str, str]:
        """HTTP-style accessor."""
        return self.metadata

    def __repr__(self) -> str:
        return f"ForwardedContext({self.kind}, {sorted(self.metadata)})"
