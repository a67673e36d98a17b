"""Training progress: reported by the module on the worker, shown as a bar by the caller.

Worker side: inside ``train``, call :func:`report_progress` (or pass it as a
module's per-step callback, e.g. the example's ``progress_callback=report_progress``)::

    from caikit_dask.progress import report_progress
    for epoch in range(1, epochs + 1):
        ...
        report_progress(step=epoch, total=epochs, loss=loss)

It logs one structured record on the ``caikit_dask.progress`` logger. On a Dask
worker the training thread's records are forwarded to the scheduler's event log
(see ``training.on_worker``), tagged with the training id, so no Dask handle is
needed in the module and the call is harmless anywhere else (a plain log line).

Caller side: :func:`wait_with_progress` follows a training until it ends and drives a
progress bar (``tqdm.auto``: a widget in Jupyter, text in a terminal; a plain text
line without tqdm) from those records, read back from the scheduler's event log, so
it also works for a training submitted by another process. Modules that only log
lines such as ``epoch 3/10`` get a bar from those too.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import re
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .formatting import whole
from .training.handle import training_of

PROGRESS_LOGGER = "caikit_dask.progress"
_MARKER = "progress "
# "epoch 3/10", "Step 30 / 100", "iteration 7/20": a counted unit, then "<n>/<m>".
_STEP_PATTERN = re.compile(
    r"\b(?:epoch|step|iteration|iter|batch)s?\b\W{0,3}(\d+)\s*/\s*(\d+)(?![\w/])",
    re.IGNORECASE,
)
# "loss=0.41", "accuracy: 0.9" next to such a step.
_METRIC_PATTERN = re.compile(
    r"\b([A-Za-z_][\w.]*)\s*[=:]\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)(?![\w.])"
)
_MIN_REPORT_INTERVAL = 0.1

_progress_log = logging.getLogger(PROGRESS_LOGGER)
# Records must be created even when the root logger is at WARNING: the worker's forwarder
# (a root handler at INFO) only sees records that the logger let through.
_progress_log.setLevel(logging.INFO)

_last_report: dict[int, float] = {}
_last_report_lock = threading.Lock()

# Latest progress seen per training id in this process (shown by ``display``).
_latest: dict[str, Progress] = {}


@dataclass
class Progress:
    """One progress report: how far a training is, and what it said about it."""

    fraction: float | None = None
    step: float | None = None
    total: float | None = None
    message: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    worker: str | None = None
    time: float | None = None

    def describe(self) -> str:
        """``epoch 3/10 (30%) loss=0.41 accuracy=0.9``-style summary."""
        parts = []
        if self.step is not None and self.total:
            parts.append(f"{_number(self.step)}/{_number(self.total)}")
        if self.fraction is not None:
            parts.append(f"({self.fraction:.0%})" if parts else f"{self.fraction:.0%}")
        if self.message:
            parts.append(self.message)
        parts.extend(f"{name}={_number(value)}" for name, value in self.metrics.items())
        return " ".join(parts)


def _number(value: Any) -> str:
    value = whole(value)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# -- worker side ---------------------------------------------------------------------------


def report_progress(
    fraction: float | Mapping[str, Any] | None = None,
    *,
    step: float | None = None,
    total: float | None = None,
    message: str | None = None,
    **metrics: Any,
) -> None:
    """Report how far the running training is (call it from the module's ``train``).

    Give ``fraction`` (0..1), or ``step`` and ``total``; extra keywords are metrics
    shown next to the bar (``loss=0.4``). A mapping as the only argument is read as a
    progress callback's dict: ``epoch``/``epochs`` or ``step``/``total``, and its other
    numbers as metrics (so ``progress_callback=report_progress`` works for the example
    module). Reports closer than 0.1 s apart are dropped, except the last step.
    """
    if isinstance(fraction, Mapping):
        values = dict(fraction)
        fraction = values.pop("fraction", None)
        step = values.pop("step", values.pop("epoch", step))
        total = values.pop("total", values.pop("epochs", total))
        message = values.pop("message", message)
        values.pop("elapsed", None)
        metrics = {
            **{k: v for k, v in values.items() if isinstance(v, (int, float, str))},
            **metrics,
        }
    if fraction is None and step is not None and total:
        fraction = float(step) / float(total)
    if fraction is not None:
        fraction = min(1.0, max(0.0, float(fraction)))
    final = fraction is not None and fraction >= 1.0
    now = time.monotonic()
    thread = threading.get_ident()
    with _last_report_lock:
        if not final and now - _last_report.get(thread, -math.inf) < _MIN_REPORT_INTERVAL:
            return
        _last_report[thread] = now
    payload = {
        "fraction": fraction,
        "step": step,
        "total": total,
        "message": message,
        "metrics": {k: _plain(v) for k, v in metrics.items()},
    }
    _progress_log.info("%s%s", _MARKER, json.dumps(payload, default=str))


def _plain(value: Any) -> Any:
    """numpy scalars and the like as plain JSON numbers."""
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


# -- caller side: reading progress back ----------------------------------------------------


def parse_progress(msg: Mapping[str, Any]) -> Progress | None:
    """The progress in one forwarded log event (``training.events.LOG_TOPIC``), if any."""
    text = str(msg.get("msg") or "")
    if msg.get("name") == PROGRESS_LOGGER and text.startswith(_MARKER):
        try:
            payload = json.loads(text[len(_MARKER) :])
        except ValueError:
            return None
        return Progress(
            fraction=payload.get("fraction"),
            step=payload.get("step"),
            total=payload.get("total"),
            message=payload.get("message"),
            metrics=dict(payload.get("metrics") or {}),
            worker=msg.get("worker"),
        )
    text = _alog_text(text)
    matches = [m for m in _STEP_PATTERN.finditer(text) if 0 < int(m.group(2)) >= int(m.group(1))]
    if not matches:
        return None
    last = matches[-1]
    step, total = int(last.group(1)), int(last.group(2))
    metrics = {name: float(value) for name, value in _METRIC_PATTERN.findall(text[last.end() :])}
    return Progress(
        fraction=step / total, step=step, total=total, metrics=metrics, worker=msg.get("worker")
    )


def _alog_text(text: str) -> str:
    """caikit's alog logs a dict (``{'log_code': ..., 'message': ..., 'args': ...}``)."""
    if not (text.startswith("{") and "'message'" in text):
        return text
    try:
        record = ast.literal_eval(text)
        message, args = record["message"], record.get("args")
        return str(message % tuple(args)) if args else str(message)
    except Exception:  # noqa: BLE001 - not an alog record after all: use the text as is
        return text


def latest_progress(training: Any, events: Any = None, rank: int | None = 0) -> Progress | None:
    """The last progress a training reported (from the scheduler's event log).

    A training of many ranks (``world_size``) reports from each; ``rank`` picks whose
    (rank 0's by default; None: any rank's latest).
    """
    training = training_of(training)
    if events is None:
        from .training import events as training_events

        events = training.client.get_events(training_events.LOG_TOPIC)
    best = None
    structured = False
    for timestamp, msg in events:
        if msg.get("id") != training.id:
            continue
        if rank is not None and msg.get("rank", rank) != rank:
            continue
        progress = parse_progress(msg)
        if progress is None:
            continue
        is_structured = msg.get("name") == PROGRESS_LOGGER
        if structured and not is_structured:
            continue  # once the module reports structured progress, ignore its log lines
        structured = structured or is_structured
        progress.time = timestamp
        best = progress
    if best is not None:
        _latest[training.id] = best
    return best


def last_known_progress(training_id: str) -> Progress | None:
    """The progress last seen in this process for ``training_id`` (no scheduler call)."""
    return _latest.get(training_id)


# -- caller side: the bar ------------------------------------------------------------------


class _TextBar:
    """A dependency-free bar: one rewritten line on a terminal, else a line per update."""

    def __init__(self, total: float, desc: str, file: Any = None):
        self.total, self.desc, self.n, self.postfix = total, desc, 0.0, ""
        self.file = file or sys.stderr
        self._tty = bool(getattr(self.file, "isatty", lambda: False)())
        self._last = ""

    def reset(self, total: float | None = None) -> None:
        self.n = 0.0
        if total is not None:
            self.total = total

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def set_postfix_str(self, postfix: str, refresh: bool = True) -> None:
        self.postfix = postfix

    def refresh(self) -> None:
        fraction = self.n / self.total if self.total else 0.0
        filled = int(round(20 * fraction))
        line = f"{self.desc}: [{'#' * filled}{'.' * (20 - filled)}] {fraction:4.0%} {self.postfix}"
        if line == self._last:
            return
        self._last = line
        if self._tty:
            self.file.write("\r" + line.ljust(100))
        else:
            self.file.write(line + "\n")
        self.file.flush()

    def close(self) -> None:
        if self._tty:
            self.file.write("\n")
            self.file.flush()


def _make_bar(progress: Any, total: float, desc: str, file: Any) -> Any:
    if progress is True or progress == "auto":
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return _TextBar(total, desc, file)
        return tqdm(total=total, desc=desc, file=file, leave=True)
    if progress == "text":
        return _TextBar(total, desc, file)
    if isinstance(progress, type):  # a tqdm class, e.g. tqdm.notebook.tqdm
        return progress(total=total, desc=desc, leave=True)
    raise TypeError(
        f"progress must be True, 'auto', 'text', a callable or a tqdm class: {progress!r}"
    )


# tqdm formats: steps when the module reports a total, else only a percentage.
_STEPS_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"
_FRACTION_FORMAT = "{l_bar}{bar}| [{elapsed}{postfix}]"


def short_id(training_id: str) -> str:
    """The first characters of the uuid part of a training id (``<hash>:<uuid>``)."""
    return str(training_id).rsplit(":", 1)[-1][:8]


def wait_with_progress(
    training: Any,
    progress: Any = True,
    timeout: float | None = None,
    *,
    interval: float = 0.25,
    file: Any = None,
) -> bool:
    """Wait for a training to end, showing its progress; True if it ended within ``timeout``.

    ``training`` is a ``DaskTraining`` or a ``DaskModelTrainFuture``. ``progress``:
    ``True``/``"auto"`` for a ``tqdm.auto`` bar (a widget in Jupyter when ipywidgets is
    installed, text in a terminal; a plain text line without tqdm), ``"text"`` for the
    plain line, a tqdm class, a callable ``fn(progress: Progress, status: str)`` called on
    every change, or ``False``/``None`` to wait without showing anything. The bar ends
    on the training's final status; errors are not raised here (``load()`` raises them).
    """
    training = training_of(training)
    if not progress:
        return training.wait(timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    callback = progress if callable(progress) and not isinstance(progress, type) else None
    desc = f"training {short_id(training.id)}"
    bar = None
    shown: tuple | None = None
    try:
        while True:
            ended = training.wait(0 if shown is None else interval)
            status = training.status
            current = _poll(training)
            if status.name == "COMPLETED" and current.fraction is not None:
                current.fraction = 1.0
                current.step = current.total or current.step
            key = (status, current.fraction, current.step, current.describe())
            if key != shown:
                shown = key
                if callback is not None:
                    callback(current, status.name)
                else:
                    bar = _update_bar(bar, progress, desc, file, current, status.name, training)
            if ended or status.is_terminal:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
    finally:
        if bar is not None:
            bar.close()


def _poll(training: Any) -> Progress:
    try:
        current = latest_progress(training)
    except Exception:  # noqa: BLE001 - the scheduler may be unreachable; keep waiting
        current = last_known_progress(training.id)
    return current or Progress()


def _update_bar(
    bar: Any, progress: Any, desc: str, file: Any, current: Progress, status: str, training: Any
) -> Any:
    total = _whole(current.total or 1)
    if bar is None:
        bar = _make_bar(progress, total, desc, file)
    elif total != bar.total:
        bar.reset(total=total)
    if hasattr(bar, "bar_format"):
        bar.bar_format = _STEPS_FORMAT if current.total else _FRACTION_FORMAT
    if current.total and current.step is not None:
        bar.n = _whole(current.step)
    elif current.fraction is not None:
        bar.n = current.fraction * total
    else:
        bar.n = total if status == "COMPLETED" else 0.0
    bar.set_description(f"{desc} {status}", refresh=False)
    worker = current.worker or training.worker
    parts = [current.message] if current.message else []
    parts.extend(f"{name}={_number(value)}" for name, value in current.metrics.items())
    if worker:
        parts.append(f"on {worker}")
    bar.set_postfix_str(" ".join(str(part) for part in parts), refresh=False)
    bar.refresh()
    return bar


def _whole(value: float) -> float:
    """Counts as ints when they are whole, so the bar shows ``3/10`` rather than ``3.0/10.0``."""
    return whole(float(value))
