"""Prometheus metrics of the process that holds the proxies (prometheus_client's default
registry, so caikit.runtime's metrics server shows them beside its own).

- ``families``: every metric's name, labels and help, declared once.
- ``model_calls``: one model's children, bound once when it is loaded, and the two
  decorators that count and time calls (``measured_call``, ``measured_stream``).
- ``served``: what is read at scrape time from the registry of served models (replicas
  by state, calls in flight and queued, autoscaling targets);
  nothing on the call path updates a gauge.
- ``trainings``: trainings submitted from this process, and their status at scrape time.

The scheduler's own metrics are ``scheduler_view.prometheus``'s.
"""
