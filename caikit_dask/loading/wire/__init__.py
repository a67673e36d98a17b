"""What crosses between the caller and a model's actor, and the channel it takes.

- ``protocol``: what both ends agree on: the pickled request and outcome, ``sendable``
  arguments, the actor's method names, the calls an actor runs at once.
- ``context``: what a runtime request context becomes on the worker.
- ``channel``: one replica's coalesced ``run_batch`` / ``collect`` messages.
- ``framing``: the frames of the direct call path, which both ends read.
- ``direct_connection``: this process's persistent connection to one worker process's
  call listener, read leader/follower style by the waiting callers.
- ``direct_channel``: one replica's calls over it, and choosing it at load
  (``direct_calls``), falling back to ``channel`` with one warning.
"""
