"""An overloaded model answers HTTP 503 through ``caikit.runtime``, gRPC RESOURCE_EXHAUSTED.

caikit's HTTP server turns a ``CaikitRuntimeException``'s gRPC status into an HTTP
code through one table, ``caikit.runtime.names.STATUS_CODE_TO_HTTP``, where
RESOURCE_EXHAUSTED is 429 Too Many Requests: one client over its rate. A model's
full queue (``max_queued_calls``) is the server's state, whoever calls: 503 Service
Unavailable, as Ray Serve answers its own backpressure. caikit raises
RESOURCE_EXHAUSTED nowhere itself, and caikit-nlp maps the TGIS server's to
INVALID_ARGUMENT, so in a runtime only ``ModelOverloaded`` reaches that entry. A
DASK initializer configured with ``max_queued_calls`` sets it to 503; the gRPC
status stays RESOURCE_EXHAUSTED, and without the key nothing changes.
"""

from __future__ import annotations

import grpc

OVERLOADED_HTTP_STATUS = 503


def answer_overload_with_503() -> None:
    """Make caikit's HTTP server answer RESOURCE_EXHAUSTED (an overloaded model) with 503."""
    from caikit.runtime import names

    table = getattr(names, "STATUS_CODE_TO_HTTP", None)
    if table is not None:  # caikit's HTTP server reads this one table
        table[grpc.StatusCode.RESOURCE_EXHAUSTED] = OVERLOADED_HTTP_STATUS
