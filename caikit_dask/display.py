"""Text and HTML views of a training, for ``repr`` and Jupyter's rich display.

Both take a ``DaskModelTrainFuture`` or a ``DaskTraining`` and make no call to the
scheduler beyond what the training already knows (status, times, worker), so they
are cheap enough for ``__repr__`` / ``_repr_html_``. Progress shown is the last
progress this process saw (``caikit_dask.progress``).
"""

from __future__ import annotations

import contextlib
import html
from datetime import datetime
from typing import Any
from urllib.parse import quote

from dask.utils import format_time

from .formatting import whole
from .progress import last_known_progress, latest_progress
from .training.handle import training_of

_STATUS_COLOURS = {
    "QUEUED": "#6c757d",
    "RUNNING": "#0d6efd",
    "COMPLETED": "#198754",
    "ERRORED": "#dc3545",
    "CANCELED": "#fd7e14",
}


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(float(value))


def _format_time(value: datetime | None) -> str:
    return value.isoformat(sep=" ", timespec="seconds") if value else "-"


def _duration(start: datetime | None, end: datetime | None) -> str | None:
    if start is None:
        return None
    return format_time(((end or datetime.now()) - start).total_seconds())


def _dashboard(training: Any) -> tuple[str | None, str | None, str | None]:
    """The dashboard link, and the task's and worker's info pages when the link allows."""
    try:
        link = training.client.dashboard_link
    except Exception:  # noqa: BLE001 - no dashboard, no link
        return None, None, None
    if not link:
        return None, None, None
    base = link[: -len("/status")] if link.endswith("/status") else None
    task = worker = None
    if base:
        key = getattr(training, "key", None)
        if key is not None:
            task = f"{base}/info/task/{quote(str(key), safe='')}.html"
        if training.worker:
            worker = f"{base}/info/worker/{quote(str(training.worker), safe='')}.html"
    return link, task, worker


def training_summary(obj: Any, refresh_progress: bool = False) -> dict[str, Any]:
    """What the views show, as plain values (also handy in tests and logs).

    ``refresh_progress`` asks the scheduler for the latest progress of a running
    training (one call); otherwise the last progress this process saw is shown.
    """
    training = training_of(obj)
    info = training.info()
    status = info.status.name
    if refresh_progress and status == "RUNNING":
        with contextlib.suppress(Exception):  # progress is a nicety: never fail a repr
            latest_progress(training)
    submitted = _time(info.submission_time)
    started = _time(getattr(training, "start_time", None))
    completed = _time(info.completion_time)
    module_class = getattr(training, "module_class", None)
    errors = [f"{type(err).__name__}: {err}" for err in (info.errors or [])]
    progress = last_known_progress(training.id)
    dashboard, task_page, worker_page = _dashboard(training)
    return {
        "id": training.id,
        "status": status,
        "module": (
            f"{module_class.__module__}.{module_class.__qualname__}" if module_class else None
        ),
        "module_name": getattr(module_class, "MODULE_NAME", None),
        "submitted": submitted,
        "started": started,
        "completed": completed,
        "queued_for": _duration(submitted, started) if started else None,
        "ran_for": _duration(started, completed),
        "resources": dict(getattr(training, "resources", None) or {}),
        "retries": getattr(training, "retries", 0),
        "worker": training.worker,
        "save_path": getattr(obj, "save_path", None),
        "errors": errors,
        "progress": progress.describe() if progress else None,
        "progress_fraction": progress.fraction if progress else None,
        "dashboard": dashboard,
        "task_page": task_page,
        "worker_page": worker_page,
    }


def _resources_text(resources: dict[str, Any]) -> str:
    if not resources:
        return "none"
    return ", ".join(f"{name}={whole(amount)}" for name, amount in resources.items())


def training_text(obj: Any) -> str:
    """A multi-line plain-text view: status, times, resources, worker, dashboard."""
    s = training_summary(obj)
    lines = [
        f"Training {s['id']}: {s['status']}"
        + (f" ({s['module_name']})" if s["module_name"] else ""),
    ]
    if s["module"]:
        lines.append(f"  module:     {s['module']}")
    lines.append(f"  submitted:  {_format_time(s['submitted'])}")
    if s["started"]:
        lines.append(f"  started:    {_format_time(s['started'])}")
    if s["completed"]:
        ran = f" (ran {s['ran_for']})" if s["ran_for"] else ""
        lines.append(f"  completed:  {_format_time(s['completed'])}{ran}")
    elif s["ran_for"]:
        lines.append(f"  running for {s['ran_for']}")
    lines.append(f"  resources:  {_resources_text(s['resources'])}")
    lines.append(f"  worker:     {s['worker'] or '-'}")
    if s["progress"]:
        lines.append(f"  progress:   {s['progress']}")
    if s["save_path"]:
        lines.append(f"  save_path:  {s['save_path']}")
    for err in s["errors"]:
        lines.append(f"  error:      {err}")
    if s["dashboard"]:
        lines.append(f"  dashboard:  {s['dashboard']}")
    return "\n".join(lines)


def training_repr(obj: Any) -> str:
    """A one-line ``repr``: ``<DaskModelTrainFuture id=... status=... worker=...>``."""
    s = training_summary(obj)
    parts = [f"id={s['id']}", f"status={s['status']}"]
    if s["resources"]:
        parts.append(f"resources={{{_resources_text(s['resources'])}}}")
    parts.append(f"worker={s['worker']}")
    if s["progress_fraction"] is not None and s["status"] == "RUNNING":
        parts.append(f"progress={s['progress_fraction']:.0%}")
    return f"<{type(obj).__name__} {' '.join(parts)}>"


def training_html(obj: Any) -> str:
    """A compact HTML card for Jupyter (``_repr_html_``); fetches a running one's progress."""
    s = training_summary(obj, refresh_progress=True)
    esc = html.escape
    colour = _STATUS_COLOURS.get(s["status"], "#6c757d")
    badge = (
        f'<span style="background:{colour};color:white;padding:1px 6px;'
        f'border-radius:4px;font-weight:bold">{esc(s["status"])}</span>'
    )
    rows: list[tuple[str, str]] = []
    if s["module"]:
        rows.append(("module", f"<code>{esc(s['module'])}</code>"))
    rows.append(("submitted", esc(_format_time(s["submitted"]))))
    if s["started"]:
        queued = f" (queued {esc(s['queued_for'])})" if s["queued_for"] else ""
        rows.append(("started", esc(_format_time(s["started"])) + queued))
    if s["completed"]:
        ran = f" (ran {esc(s['ran_for'])})" if s["ran_for"] else ""
        rows.append(("completed", esc(_format_time(s["completed"])) + ran))
    rows.append(("resources", esc(_resources_text(s["resources"]))))
    worker = esc(s["worker"] or "-")
    if s["worker_page"]:
        worker = f'<a href="{esc(s["worker_page"])}" target="_blank">{worker}</a>'
    rows.append(("worker", f"<code>{worker}</code>"))
    if s["progress"]:
        fraction = s["progress_fraction"]
        bar = (
            f'<progress value="{fraction:.3f}" max="1" style="width:12em"></progress> '
            if fraction is not None
            else ""
        )
        rows.append(("progress", bar + esc(s["progress"])))
    if s["save_path"]:
        rows.append(("save_path", f"<code>{esc(str(s['save_path']))}</code>"))
    for err in s["errors"]:
        rows.append(("error", f'<span style="color:{colour}">{esc(err)}</span>'))
    links = []
    if s["dashboard"]:
        links.append(f'<a href="{esc(s["dashboard"])}" target="_blank">dashboard</a>')
    if s["task_page"]:
        links.append(f'<a href="{esc(s["task_page"])}" target="_blank">task</a>')
    if links:
        rows.append(("dask", " &middot; ".join(links)))
    body = "".join(
        f'<tr><th style="text-align:left;padding-right:1em">{esc(name)}</th>'
        f'<td style="text-align:left">{value}</td></tr>'
        for name, value in rows
    )
    title = esc(s["module_name"] or "caikit training")
    return (
        f'<div class="caikit-dask-training"><strong>{title}</strong> '
        f"training <code>{esc(str(s['id']))}</code> {badge}"
        f"<table>{body}</table></div>"
    )
