"""The state of a model's replicas in the caller's process (no Dask calls here).

- ``replica``: one replica and its named states (starting, routed, draining, dead,
  released), and why a replica leaves routing.
- ``replica_set``: ``ReplicaSet``: admission, routing, membership, closing, description.
- ``spec``: what the replicas are (``ReplicaSpec``).
- ``routing``: which replica takes a call (pure); ``backpressure``: ``max_queued_calls``.
- ``on_demand``: loading on the next call (lazy, evicted, scaled to zero).
- ``registry``: every set this process serves, and the owner of each actor key.
- ``last_calls``: when models were last called, for eviction.
"""
