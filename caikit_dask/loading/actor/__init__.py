"""What runs in the worker processes: the actor holding one model.

- ``model_actor``: ``ModelActor``, the Dask actor every call lands in (batches,
  streams, stoppable calls, ping); its method names are ``wire.protocol``'s.
- ``model_load``: loading the model there and measuring what it took.
- ``worker_pool``: the one thread pool a worker's models share.
- ``outcomes``: calls' outcomes, waited for without waking the event loop per call.
- ``stoppable``: a call its caller can stop (a prediction job's).
- ``call_listener``: the worker process's one listener for direct calls, shared by
  its actors.
"""
