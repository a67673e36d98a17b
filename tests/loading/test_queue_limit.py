"""The max_queued_calls rule on plain numbers (real calls: tests/runtime/test_backpressure.py)."""

import logging
import subprocess
import sys

import pytest

from caikit_dask.errors import ModelOverloaded
from caikit_dask.loading.replicas.backpressure import QueueLimit
from caikit_dask.loading.wire.protocol import MAX_CONCURRENCY


def test_admits_what_the_replicas_run_at_once_plus_the_limit():
    limit = QueueLimit("m", 3)
    for outstanding in range(2 * MAX_CONCURRENCY + 3):
        limit.admit(outstanding, 2)
    with pytest.raises(ModelOverloaded, match="max_queued_calls=3"):
        limit.admit(2 * MAX_CONCURRENCY + 3, 2)


def test_with_no_live_replica_only_the_limit_may_wait():
    limit = QueueLimit("m", 1)
    limit.admit(0, 0)
    with pytest.raises(ModelOverloaded, match="0 live replica"):
        limit.admit(1, 0)


def test_the_error_gives_the_numbers_and_the_fixes():
    with pytest.raises(ModelOverloaded) as refused:
        QueueLimit("m", 0).admit(MAX_CONCURRENCY, 1)
    message = str(refused.value)
    assert f"Model m is overloaded: {MAX_CONCURRENCY} calls outstanding" in message
    assert f"1 live replica(s) run {MAX_CONCURRENCY} at once, and 0 are queued" in message
    assert "Add replicas, raise max_queued_calls, or send calls more slowly" in message
    assert refused.value.status_code.name == "RESOURCE_EXHAUSTED"


def test_refusals_are_logged_once_per_period_with_their_count(caplog):
    limit = QueueLimit("m", 0)
    with caplog.at_level(logging.WARNING):
        for _ in range(50):
            with pytest.raises(ModelOverloaded):
                limit.admit(MAX_CONCURRENCY, 1)
    warnings = [r for r in caplog.records if "overloaded" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


def test_an_initializer_with_a_queue_limit_makes_caikit_answer_overload_with_503():
    """In a fresh process: caikit's HTTP table changes only once the key is configured."""
    script = (
        "import grpc\n"
        "from caikit.runtime.names import STATUS_CODE_TO_HTTP as table\n"
        "from caikit_dask import DaskModelInitializer\n"
        "code = grpc.StatusCode.RESOURCE_EXHAUSTED\n"
        "DaskModelInitializer({}, 'plain')\n"
        "print(table[code])\n"
        "DaskModelInitializer({'max_queued_calls': 2}, 'limited')\n"
        "print(table[code])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split() == ["429", "503"]
