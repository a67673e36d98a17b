"""Arguments shaped as caikit.runtime passes them cross to a worker intact (no processes).

The end-to-end versions are in test_runtime_dask.py (bidi streaming, training data sources).
"""

from __future__ import annotations

import itertools

import cloudpickle
from caikit.core.data_model import DataStream

from caikit_dask.loading.wire.protocol import sendable as _sendable

TEXTS = ["I love it", "I hate it", "Wonderful"]


def runtime_input_stream() -> DataStream:
    """What caikit.runtime hands a bidi-streaming task: a DataStream over one branch of an
    ``itertools.tee`` of the request iterator (the other branch was peeked). It can be read
    once only, and ``len()`` reads it."""
    requests_ = iter([{"text_stream": text} for text in TEXTS])
    peeked, rest = itertools.tee(requests_, 2)
    next(peeked)
    return DataStream.from_iterable(rest).map(lambda request: request["text_stream"])


def test_a_single_pass_input_stream_is_copied_whole():
    sent = _sendable(runtime_input_stream())
    # A list(stream) copy would be empty: list() calls len() first, which drains the stream.
    assert list(sent) == TEXTS
    assert list(sent) == TEXTS  # the copy can be read again
    assert list(cloudpickle.loads(cloudpickle.dumps(sent))) == TEXTS
