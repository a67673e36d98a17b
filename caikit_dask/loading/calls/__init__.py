"""Making calls on a model's replicas: routed, retried when a replica dies, bounded.

- ``retrying``: one call, on another replica if its own died, within ``call_timeout``.
- ``streams``: output streams, opened like a call and pulled in chunks.
- ``stoppable``: a call a prediction job can stop on its actor.
- ``batch``: ``proxy.map`` over many inputs, in input order.
"""
