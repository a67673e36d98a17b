"""What crosses between the caller and a model's actor, and the channel it takes.

- ``protocol``: what both ends agree on: the pickled request and outcome, ``sendable``
  arguments, the actor's method names, the calls an actor runs at once.
- ``context``: what a runtime request context becomes on the worker.
- ``channel``: one replica's coalesced ``run_batch`` / ``collect`` messages.
"""
