"""Background prediction jobs on Dask: caikit's job predictor type ``DASK``.

``predictor`` is the caikit adapter, ``future`` the caller's handle on one job,
``scheduler_state`` what the scheduler keeps about jobs (so any process finds
them by id), ``worker_side`` the Dask task that runs the call.
"""
