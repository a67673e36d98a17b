"""Pickling a call's arguments so that a failure names the argument at fault.

"Cannot pickle" from deep inside a pickler does not say which of a call's
arguments was the problem; trainings and model calls both name it (``#0`` for a
positional argument, ``'text'`` for a keyword) in the error raised at the call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from distributed.protocol.pickle import dumps as distributed_dumps


class UnpicklableArgument(TypeError):
    """One argument of a call could not be pickled; ``name`` says which."""

    def __init__(self, name: str, value: Any, cause: BaseException):
        super().__init__(f"argument {name} ({type(value).__name__}): {cause}")
        self.name, self.value, self.cause = name, value, cause


def argument_name(position_or_keyword: int | str) -> str:
    """How errors name an argument: ``#0`` by position, ``'text'`` by keyword."""
    if isinstance(position_or_keyword, int):
        return f"#{position_or_keyword}"
    return repr(position_or_keyword)


def named_arguments(args: tuple, kwargs: dict) -> list[tuple[str, Any]]:
    """Every argument of a call with the name errors give it."""
    named = [(argument_name(index), value) for index, value in enumerate(args)]
    return named + [(argument_name(keyword), value) for keyword, value in kwargs.items()]


def _dump(name: str, value: Any, dumps: Callable[[Any], bytes]) -> bytes:
    try:
        return dumps(value)
    except Exception as err:  # noqa: BLE001 - any pickling failure means the same
        raise UnpicklableArgument(name, value, err) from err


def pickle_each_argument(
    args: tuple, kwargs: dict, dumps: Callable[[Any], bytes] = distributed_dumps
) -> tuple[list[bytes], dict[str, bytes]]:
    """Each argument pickled on its own; raises ``UnpicklableArgument`` naming the first bad one."""
    pickled_args = [_dump(argument_name(i), value, dumps) for i, value in enumerate(args)]
    pickled_kwargs = {
        keyword: _dump(argument_name(keyword), value, dumps) for keyword, value in kwargs.items()
    }
    return pickled_args, pickled_kwargs


def unpicklable_argument(
    args: tuple, kwargs: dict, dumps: Callable[[Any], bytes] = distributed_dumps
) -> tuple[str, Any]:
    """Which argument fails to pickle, once pickling the call as a whole has failed.

    ``("(all together)", (args, kwargs))`` when each pickles alone.
    """
    for name, value in named_arguments(args, kwargs):
        try:
            dumps(value)
        except Exception:  # noqa: BLE001 - this is the one
            return name, value
    return "(all together)", (args, kwargs)
