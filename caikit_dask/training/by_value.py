"""Sending caikit module classes that workers cannot import (notebook cells) by value.

A module class defined in a notebook lives in ``__main__`` (or in a function's
``<locals>``), so a worker cannot import it and cloudpickle copies it by value. Plain
cloudpickle gets this wrong for caikit modules in two ways:

- it copies the class's ``__dict__`` including what ``@module`` generated from it
  (signatures holding the annotated types; with a data object defined in the notebook
  these reach protobuf descriptors, which cannot be pickled), and
- ``@module``'s side effects are not replayed on the worker: the class is missing
  from the worker's module registry, so a model of that class cannot be loaded
  there (``LocalSharedBackend().load`` looks the class up by ``MODULE_ID``).

Here the class travels as its own attributes minus everything ``@module`` derived
(the methods go by value, with the notebook globals they use), plus the decorator's
arguments and the ``@Task.taskmethod`` marks; the worker rebuilds the class and
applies ``@module`` again, which registers it. Classes that still cannot travel
(``@dataobject`` or ``@task`` classes defined in the notebook: their protobuf
classes live in process-wide registries) fail at the call with a message saying
why and what to do.

Caller side: ``prepare_module_class`` (for a training task argument),
``ensure_registered_on_workers`` (before loading a model into actors) and
``check_by_value``. Worker side: ``resolve_module_class``.
"""

from __future__ import annotations

import io
import pickle
import sys
import threading
import types
import uuid
import weakref
from enum import Enum
from typing import Any, NoReturn

import cloudpickle
from distributed.diagnostics.plugin import WorkerPlugin

from ..errors import ByValueError, error, log
from ..module_identity import MODULE_IDENTITY_ATTRIBUTES
from ..per_client import PerClient

# What ``@module`` derives from the class (rebuilt on the worker by applying it again),
# and what Python recreates for any class.
_DERIVED_ATTRIBUTES = frozenset(MODULE_IDENTITY_ATTRIBUTES) | {
    "__dict__",
    "__weakref__",
    "__module__",
    "__qualname__",
    "_abc_impl",
}

_TOKEN_ATTRIBUTE = "_caikit_dask_by_value_token"
_FINISHED_ATTRIBUTE = "_caikit_dask_by_value_finished"

_FIX = (
    "Put the module (and any data model or task it defines) in an importable .py file "
    "and make it available on the workers, e.g. client.upload_file('my_module.py', "
    "load=False) (load=False: distributed would otherwise import and reload it, running "
    "@module twice), or install the library that defines it in the workers' environment; "
    "then import it in the notebook."
)

# Token -> class in this process: the caller's originals and the classes rebuilt here.
_classes_by_token: weakref.WeakValueDictionary[str, type] = weakref.WeakValueDictionary()
_tokens: weakref.WeakKeyDictionary[type, str] = weakref.WeakKeyDictionary()
_lock = threading.RLock()
# Per client: module_id -> token already registered on that client's workers.
_registered: PerClient[dict[str, str]] = PerClient(lambda _: {})


# -- what needs sending by value -----------------------------------------------------------


def is_by_value(cls: type) -> bool:
    """True when workers could not import ``cls`` by name (``__main__``, ``<locals>``...)."""
    module_name = getattr(cls, "__module__", None)
    qualname = getattr(cls, "__qualname__", "")
    if not module_name or module_name == "__main__" or "<locals>" in qualname:
        return True
    registered = cloudpickle.list_registry_pickle_by_value()
    if any(module_name == name or module_name.startswith(f"{name}.") for name in registered):
        return True
    target: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return target is not cls


def _is_module_class(obj: Any) -> bool:
    from caikit.core.modules import ModuleBase

    return isinstance(obj, type) and issubclass(obj, ModuleBase) and "MODULE_ID" in obj.__dict__


def _unsupported_kind(cls: type) -> str | None:
    """What a by-value class is, when it is a caikit type this module cannot rebuild."""
    from caikit.core.data_model.base import DataBase
    from caikit.core.task import TaskBase

    if issubclass(cls, DataBase) or (issubclass(cls, Enum) and hasattr(cls, "_proto_enum")):
        return "a caikit data model class (@dataobject)"
    if issubclass(cls, TaskBase) and cls is not TaskBase:
        return "a caikit task (@task)"
    return None


# -- caller side: pickling -----------------------------------------------------------------


def _token_for(cls: type) -> str:
    with _lock:
        token = _tokens.get(cls)
        if token is None:
            token = cls.__dict__.get(_TOKEN_ATTRIBUTE) or uuid.uuid4().hex
            _tokens[cls] = token
            _classes_by_token[token] = cls
        return token


def _own_tasks(cls: type) -> list[type]:
    """The tasks given to this class's ``@module`` (not those inherited from its bases)."""
    inherited = {
        task for base in cls.__mro__[1:] for task in base.__dict__.get("_TASK_CLASSES", ())
    }
    return [task for task in cls.__dict__.get("_TASK_CLASSES", ()) if task not in inherited]


def _taskmethod_marks(cls: type, tasks: list[type]) -> dict[type, list]:
    """The ``@Task.taskmethod`` marks recorded for ``cls`` (caikit keys them by class path)."""
    from caikit.core.task import _make_keyname_for_module

    keyname = _make_keyname_for_module(cls)
    marks = {}
    for task in tasks:
        recorded = task.deferred_method_decorators.get(task, {}).get(keyname)
        if recorded:
            marks[task] = list(recorded)
    return marks


def _decorator_kwargs(cls: type) -> dict[str, Any]:
    from caikit.core.registries import module_registry

    kwargs: dict[str, Any] = {
        "id": cls.MODULE_ID,
        "name": cls.MODULE_NAME,
        "version": cls.MODULE_VERSION,
        "tasks": _own_tasks(cls),
        "backend_type": cls.__dict__.get("BACKEND_TYPE", "LOCAL"),
    }
    registered = module_registry().get(cls.MODULE_ID)
    if registered is not None and registered is not cls:
        # A backend implementation of another module (``@module(base_module=...)``).
        kwargs = {
            "base_module": registered,
            "backend_type": kwargs["backend_type"],
        }
    return kwargs


def _reduce_module_class(cls: type) -> tuple:
    token = _token_for(cls)
    attributes = {
        name: value for name, value in cls.__dict__.items() if name not in _DERIVED_ATTRIBUTES
    }
    decorator = _decorator_kwargs(cls)
    state = {
        "attributes": attributes,
        "decorator": decorator,
        "marks": _taskmethod_marks(cls, decorator.get("tasks") or []),
    }
    skeleton_args = (type(cls), cls.__name__, cls.__qualname__, cls.__module__, cls.__bases__)
    return (_module_skeleton, (*skeleton_args, token), state, None, None, _finish_module_class)


class _Pickler(cloudpickle.Pickler):
    """cloudpickle, with by-value caikit module classes rebuilt by ``@module`` on load."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type) and is_by_value(obj):
            if _is_module_class(obj):
                return _reduce_module_class(obj)
            kind = _unsupported_kind(obj)
            if kind is not None:
                raise ByValueError(
                    f"{obj.__module__}.{obj.__qualname__} is {kind} defined in "
                    f"{_where(obj)}; its protobuf class lives in process-wide registries "
                    "and cannot be sent to a worker"
                )
        return super().reducer_override(obj)


def _where(cls: type) -> str:
    if cls.__module__ == "__main__":
        return "__main__ (e.g. a notebook cell)"
    if "<locals>" in cls.__qualname__:
        return "a function body"
    return f"{cls.__module__}, which the workers cannot import"


def _dumps(obj: Any) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


class ByValueModuleClass:
    """A picklable stand-in for a module class the workers cannot import.

    Resolve it on the worker with ``resolve_module_class``: that rebuilds the class
    (once per worker process) and registers it with the worker's caikit module registry.
    """

    def __init__(self, module_class: type):
        self.module_id: str = module_class.MODULE_ID
        self.name = f"{module_class.__module__}.{module_class.__qualname__}"
        self.token = _token_for(module_class)
        self.payload = _dumps(module_class)

    def resolve(self) -> type:
        with _lock:
            cls = _classes_by_token.get(self.token)
            if cls is not None and cls.__dict__.get(_FINISHED_ATTRIBUTE, True):
                return cls
            return cloudpickle.loads(self.payload)

    def __repr__(self) -> str:
        return f"<ByValueModuleClass {self.name} ({self.module_id}) {len(self.payload)} bytes>"


def _explain(module_class: type, err: BaseException) -> NoReturn:
    error(
        "<DSK70000001E>",
        ByValueError(
            f"Module class {module_class.__qualname__} is defined in {_where(module_class)}"
            f" and cannot be sent to Dask workers by value: {type(err).__name__}: {err}. " + _FIX
        ),
    )


def prepare_module_class(module_class: type) -> type | ByValueModuleClass:
    """What to pass to a Dask task in place of ``module_class``.

    An importable class is returned unchanged (pickled by reference). A class the
    workers cannot import comes back as a ``ByValueModuleClass``; a class that cannot
    be sent at all raises ``ByValueError`` saying why and what to do.
    """
    if not is_by_value(module_class):
        return module_class
    if not _is_module_class(module_class):
        _explain(module_class, ByValueError("it is not a @module-decorated caikit module"))
    try:
        shipped = ByValueModuleClass(module_class)
    except Exception as err:  # noqa: BLE001 - any pickling failure means the same to the user
        _explain(module_class, err)
    log.debug("Sending module class %s by value (%d bytes)", shipped.name, len(shipped.payload))
    return shipped


def check_by_value(module_class: type) -> None:
    """Raise ``ByValueError`` (with the fix) if ``module_class`` cannot reach the workers."""
    prepare_module_class(module_class)


# -- worker side ---------------------------------------------------------------------------


def resolve_module_class(module_class: type | ByValueModuleClass) -> type:
    """The module class itself, rebuilt and registered here if it was sent by value."""
    if isinstance(module_class, ByValueModuleClass):
        return module_class.resolve()
    return module_class


def _module_skeleton(
    metaclass: type, name: str, qualname: str, module: str, bases: tuple, token: str
) -> type:
    """The class object for ``token`` in this process: the original, or a new empty one."""
    with _lock:
        existing = _classes_by_token.get(token)
        if existing is not None:
            return existing

        def body(namespace: dict) -> None:
            namespace["__module__"] = module
            namespace["__qualname__"] = qualname

        cls = types.new_class(name, bases, {"metaclass": metaclass}, body)
        type.__setattr__(cls, _TOKEN_ATTRIBUTE, token)
        type.__setattr__(cls, _FINISHED_ATTRIBUTE, False)
        _classes_by_token[token] = cls
        _tokens[cls] = token
        return cls


def _finish_module_class(cls: type, state: dict) -> None:
    """Give the skeleton its attributes, then apply ``@module`` (which registers it)."""
    from caikit.core import module
    from caikit.core.registries import module_backend_registry, module_registry
    from caikit.core.task import _make_keyname_for_module

    with _lock:
        if cls.__dict__.get(_FINISHED_ATTRIBUTE, True):
            return  # the caller's original, or already rebuilt in this process
        for name, value in state["attributes"].items():
            # type.__setattr__: caikit's metaclass warns on setting ``load``, which is
            # already the wrapped one here.
            type.__setattr__(cls, name, value)
        keyname = _make_keyname_for_module(cls)
        for task, marks in state["marks"].items():
            task.deferred_method_decorators.setdefault(task, {})[keyname] = list(marks)
        decorator = state["decorator"]
        module_id = decorator.get("id")
        registry = module_registry()
        current = registry.get(module_id) if module_id else None
        if current is not None and current is not cls:
            replaceable = current.__dict__.get(_TOKEN_ATTRIBUTE) is not None or (
                # a script's own copy, imported by a spawned worker process as __mp_main__
                current.__module__ in ("__main__", "__mp_main__")
            )
            if not replaceable:
                raise ByValueError(
                    f"MODULE_ID {module_id} of {cls.__module__}.{cls.__qualname__} (sent "
                    f"by value) is already taken on this worker by the importable class "
                    f"{current.__module__}.{current.__qualname__}; give the notebook "
                    "module its own id"
                )
            # An earlier definition of the same notebook module (e.g. a re-run cell).
            log.debug("Replacing %s in the module registry with the class sent by value", current)
            del registry[module_id]
            module_backend_registry().get(module_id, {}).pop(
                decorator.get("backend_type", "LOCAL"), None
            )
        module(**decorator)(cls)
        type.__setattr__(cls, _FINISHED_ATTRIBUTE, True)


# -- loading: registering the class on every worker ----------------------------------------


class RegisterModulePlugin(WorkerPlugin):
    """Worker plugin rebuilding a by-value module class on every (also future) worker."""

    def __init__(self, shipped: ByValueModuleClass):
        self.shipped = shipped
        self.name = plugin_name(shipped.module_id)

    def setup(self, worker: Any = None) -> None:
        self.shipped.resolve()

    def teardown(self, worker: Any = None) -> None:
        pass


def plugin_name(module_id: str) -> str:
    return f"caikit-dask-by-value-{module_id}"


def ensure_registered_on_workers(client: Any, module_class: type) -> bool:
    """Make workers (present and future) know a by-value ``module_class`` by its MODULE_ID.

    Needed before loading a model of a notebook-defined module into actors: the actor
    loads through the worker's module registry. No-op (False) for an importable class;
    registers once per client and class definition (True when it registered now).
    """
    shipped = prepare_module_class(module_class)
    if not isinstance(shipped, ByValueModuleClass):
        return False
    registered = _registered.get(client)
    with _lock:
        if registered.get(shipped.module_id) == shipped.token:
            return False
    plugin = RegisterModulePlugin(shipped)
    client.register_plugin(plugin, name=plugin.name)
    with _lock:
        registered[shipped.module_id] = shipped.token
    return True
