"""Background prediction jobs on Dask: caikit's job predictor type ``DASK``.

The rooms, by where their code runs:

- In the caller's process: ``predictor`` (the caikit adapter: submit, find by id),
  ``future`` (the caller's handle on one job) and ``settings`` (its config).
- Both: ``model_refs``, how the task reaches its model (built by the caller, sent
  with the task, opened and called on the worker).
- On a worker: ``on_worker``, the Dask task that runs the call, and stopping it.
- On the scheduler: ``on_scheduler``, the record and dataset kept there about each
  job (so any process finds it by id), and forgetting them.
"""
