"""Both ends of a call agree: every actor method the caller side names exists on the actor."""

import inspect

from caikit_dask.loading.actor.model_actor import ModelActor
from caikit_dask.loading.wire import protocol


def test_every_named_actor_method_is_a_method_of_the_actor():
    for name in protocol.ACTOR_METHODS:
        assert callable(getattr(ModelActor, name, None)), f"ModelActor has no {name}"


def test_the_calls_answered_on_the_event_loop_are_coroutines():
    # Dask runs a synchronous actor method in the actor's one thread: these must not block it.
    for name in (protocol.RUN_BATCH, protocol.COLLECT, protocol.OPEN_STREAM, protocol.PING):
        assert inspect.iscoroutinefunction(getattr(ModelActor, name)), name
