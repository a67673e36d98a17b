"""Background prediction jobs on Dask: caikit's job predictor type ``DASK``.

``predictor`` is the caikit adapter, ``future`` the caller's handle on one job,
``on_scheduler`` what the scheduler keeps about jobs (so any process finds
them by id), ``on_worker`` the Dask task that runs the call.
"""
