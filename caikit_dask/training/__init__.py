"""Training on Dask, one job per module; data flows trainer -> training -> Dask.

- ``checks``: what the ``train`` call is checked for, and pickled once into (arguments,
  the module class by reference or ``by_value``).
- ``submit``: submits the task and publishes its record (``publisher``); finds a
  training again by id (``reattach``) or lists them all (``list_all``).
- ``handle``: ``DaskTraining``, the caller's handle (status, wait, cancel, result, logs,
  release, delete).
- ``state``: the state machine its status comes from.
- ``monitor``: routes scheduler events to the handles this process follows.
- ``on_worker`` / ``on_scheduler``: what runs on a worker and on the scheduler.
- ``log_store``: the scheduler plugin keeping each training's last log lines.
- ``events``: the topic, state and dataset names the three sides share.
- ``by_value`` and ``shipping``: module classes out, trained models back.
"""
