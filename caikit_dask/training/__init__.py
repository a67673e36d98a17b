"""Training on Dask, one job per module; data flows trainer -> training -> Dask.

The rooms, by where their code runs:

In the caller's process
- ``checks``: what the ``train`` call is checked for, and pickled once into (arguments,
  the module class by reference or ``by_value``).
- ``submit``: submits the task and publishes its record (``publisher``); finds a
  training again by id (``reattach``) or lists them all (``list_all``).
- ``handle``: ``DaskTraining``, the caller's handle (status, wait, cancel, result, logs,
  release, delete).
- ``state``: the state machine its status comes from (plain data, no Dask).
- ``monitor``: routes scheduler events to the trainings this process follows; it knows
  them only as its ``TrainingListener`` (the handle imports the monitor, never back).

On a worker
- ``on_worker``: the training task (``train`` in a stoppable thread, state and log
  lines sent as events) and stopping it.

On the scheduler (shipped by value: the scheduler needs no caikit-dask)
- ``on_scheduler``: reading one training's facts, listing all, forgetting one.
- ``log_store``: the scheduler plugin keeping each training's last log lines, and
  its reader.

Shared by all three
- ``events``: the topic, state and dataset names.
- ``by_value`` and ``shipping``: module classes out, trained models back.
"""
