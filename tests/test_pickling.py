"""The shared argument pickling: a failure names the argument at fault."""

import threading

import cloudpickle
import pytest

from caikit_dask.pickling import UnpicklableArgument, pickle_each_argument, unpicklable_argument


def test_each_argument_is_pickled_on_its_own():
    args, kwargs = pickle_each_argument((1, "a"), {"text": [2]}, cloudpickle.dumps)
    assert [cloudpickle.loads(blob) for blob in args] == [1, "a"]
    assert {name: cloudpickle.loads(blob) for name, blob in kwargs.items()} == {"text": [2]}


@pytest.mark.parametrize(
    "args, kwargs, name",
    [((1, threading.Lock()), {}, "#1"), ((1,), {"text": "ok", "lock": threading.Lock()}, "'lock'")],
)
def test_the_first_unpicklable_argument_is_named(args, kwargs, name):
    with pytest.raises(UnpicklableArgument) as raised:
        pickle_each_argument(args, kwargs)
    assert raised.value.name == name
    assert isinstance(raised.value.value, type(threading.Lock()))
    assert "lock" in str(raised.value.cause)
    assert unpicklable_argument(args, kwargs)[0] == name


def test_no_single_culprit_is_said_so():
    assert unpicklable_argument((1,), {"a": 2}) == ("(all together)", ((1,), {"a": 2}))
