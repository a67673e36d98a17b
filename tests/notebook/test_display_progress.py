"""Progress reporting and the text/HTML views of a training (caikit_dask.progress/display)."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from caikit_dask import DaskModelTrainer
from caikit_dask.display import training_html, training_repr, training_summary, training_text
from caikit_dask.example import TextClassifier
from caikit_dask.progress import (
    PROGRESS_LOGGER,
    Progress,
    latest_progress,
    parse_progress,
    report_progress,
    wait_with_progress,
)


def _alog(message: str, *args) -> str:
    """What the worker forwards for an alog record: the str of alog's dict."""
    return str({"log_code": "<CKD21873411I>", "message": message, "args": args})


def test_report_progress_logs_one_structured_record(caplog):
    caplog.set_level(logging.INFO, logger=PROGRESS_LOGGER)
    report_progress({"epoch": 3, "epochs": 12, "loss": 0.5, "accuracy": 0.75, "elapsed": 1.0})
    report_progress(step=4, total=12)  # within 0.1 s of the last one: dropped
    report_progress(step=12, total=12, message="done")  # the last step always goes
    records = [r for r in caplog.records if r.name == PROGRESS_LOGGER]
    assert len(records) == 2
    first = parse_progress({"name": PROGRESS_LOGGER, "msg": records[0].getMessage()})
    assert first.fraction == 0.25 and (first.step, first.total) == (3, 12)
    assert first.metrics == {"loss": 0.5, "accuracy": 0.75}
    assert first.describe() == "3/12 (25%) loss=0.5 accuracy=0.75"
    last = json.loads(records[1].getMessage().split(" ", 1)[1])
    assert last["fraction"] == 1.0 and last["message"] == "done"


def test_step_lines_in_plain_logs_count_as_progress():
    line = _alog("epoch %d/%d loss=%.4f accuracy=%.3f", 4, 20, 0.30514, 1.0)
    progress = parse_progress({"name": "CKD-EXMPL", "msg": line, "worker": "tcp://w:1"})
    assert (progress.step, progress.total, progress.fraction) == (4, 20, 0.2)
    assert progress.metrics == {"loss": 0.3051, "accuracy": 1.0}
    assert progress.worker == "tcp://w:1"
    assert parse_progress({"msg": "Step 7 / 10: loss: 1e-3"}).metrics == {"loss": 0.001}
    # Other n/m in a line are not progress.
    buckets = _alog("%d/%d feature buckets used", 1521, 16384)
    assert parse_progress({"name": "CKD-EXMPL", "msg": buckets}) is None
    assert parse_progress({"msg": "loaded 3/4 shards"}) is None


@pytest.mark.slow
def test_progress_and_views_of_a_real_training(local_cluster, connection, tmp_path):
    trainer = DaskModelTrainer({"connection": connection, "resources": {"GPU": 1}}, "progress")
    future = trainer.train(
        TextClassifier,
        epochs=10,
        sleep_per_epoch=0.05,
        progress_callback=report_progress,
        save_path=str(tmp_path / "model"),
    )
    seen: list[tuple[str, Progress]] = []
    assert wait_with_progress(future, lambda progress, status: seen.append((status, progress)))
    assert seen[-1][0] == "COMPLETED"
    assert seen[-1][1].fraction == 1.0 and seen[-1][1].step == 10
    assert any(status == "RUNNING" and p.fraction and p.fraction < 1 for status, p in seen)
    assert latest_progress(future).metrics.keys() >= {"loss", "accuracy"}

    stream = io.StringIO()
    assert wait_with_progress(future, "text", file=stream)  # already over: one line
    assert re.search(r"training \w{8} COMPLETED: \[#{20}\] 100% loss=", stream.getvalue())

    summary = training_summary(future)
    assert summary["status"] == "COMPLETED" and summary["resources"] == {"GPU": 1.0}
    assert summary["worker"].startswith("tcp://127.0.0.1:")
    assert summary["task_page"].endswith(".html") and "/info/task/" in summary["task_page"]
    text = training_text(future)
    assert f"Training {future.id}: COMPLETED (caikit-dask example text classifier)" in text
    assert re.search(r"resources: +GPU=1\n", text) and "progress:   10/10 (100%)" in text
    html = training_html(future)
    assert ">COMPLETED</span>" in html and '<progress value="1.000"' in html
    assert html.count("<tr>") >= 6 and "dashboard</a>" in html
    assert training_repr(future).startswith(f"<DaskModelTrainFuture id={future.id} status=")
