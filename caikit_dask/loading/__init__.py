"""Serving models from Dask actors; data flows loader -> proxy -> calls -> wire -> actor.

The rooms, by where their code runs and what it does:

- ``loader`` builds a model's ``ReplicaSet`` (the one place) and returns its
  ``proxy``, the module caikit holds; ``publishing`` keeps a model reachable by name.
- ``calls/``: calls from the caller's thread: routed, retried on another replica when
  one dies, bounded by ``call_timeout``; streams, stoppable calls, batch ``map``.
- ``wire/``: what crosses to an actor (the protocol both ends share) and the channel
  a replica's calls take.
- ``replicas/``: the state of a model's replicas in this process: named replica
  states, routing, admission, on-demand loading, and the registry of what is served.
- ``placement/``: where replicas go, as the caller asks the scheduler: booking,
  memory, asking an adaptive cluster for workers, starting an actor.
- ``upkeep/``: what keeps served models placed: lifecycle, repairs, health checks,
  autoscaling, eviction and retirement notices, releasing.
- ``actor/``: what runs in the worker processes: the ``ModelActor`` and its pool.
- ``scheduler/``: what runs on the scheduler, sent by value: the books, the pure
  placement plan, the retirement and adaptive-target plugins.

Imports go one way: loader -> proxy -> calls -> upkeep -> replicas -> placement ->
actor -> wire, and placement -> scheduler; ``actor`` shares only ``wire.protocol`` and
``wire.framing`` with the caller side.
"""
