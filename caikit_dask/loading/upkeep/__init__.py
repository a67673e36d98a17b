"""Keeping served models placed: what runs in the caller's process around the calls.

- ``lifecycle``: placing a model's replicas at load, on demand, one more, or adopted.
- ``placing``: booking workers for replicas (``book_for``) and starting their actors.
- ``repairs``: replacing dead replicas in the background.
- ``health``: telling a dead replica from a slow one; the one loop checking every model.
- ``autoscaling_policy`` (pure) and ``autoscaler`` (the one loop acting on it).
- ``announcements``: the scheduler's eviction and retirement notices, handed to
  ``eviction`` and ``leaving`` (moving models off a retiring worker).
- ``releasing``: the one place replicas and their bookings are let go.
"""
