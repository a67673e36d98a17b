"""Training on Dask: the worker-side task, client-side monitoring and the handle."""
