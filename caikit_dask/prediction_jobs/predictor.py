"""``DaskJobPredictor``: caikit's job predictor type DASK (background prediction jobs).

``predict`` submits the call as a Dask task and returns at once; the job is
published on the scheduler, so ``get_prediction_future(id)`` finds it from any
process connected to the same scheduler (a restarted runtime, another replica).
Ids are composed like caikit's LOCAL predictor's, so the runtime routes them
back to this predictor by its name.

model_management:
    job_predictors:
        <predictor name>:
            type: DASK
            config:
                connection: {...}        # shared with the DASK trainer/initializer
                retention_duration: 1d   # forget ended jobs (and their results) after this
"""

from __future__ import annotations

import threading
import time
import uuid
import weakref
from datetime import datetime
from typing import Any

import aconfig
import cloudpickle
from caikit.core.exceptions.caikit_core_exception import (
    CaikitCoreException,
    CaikitCoreStatusCode,
)
from caikit.core.model_management import job_predictor_factory
from caikit.core.model_management.job_predictor_base import JobPredictorBase
from caikit.core.modules import ModuleBase
from caikit.core.toolkit.reversible_hasher import ReversibleHasher
from distributed import Client, Future

from ..connection import DaskConnection
from ..errors import error
from ..loading.wire.protocol import sendable
from . import on_scheduler
from .future import DaskJobPredictorFuture
from .model_refs import LocalModelRef, PublishedModelRef
from .on_worker import run_prediction
from .settings import JobPredictorSettings


def is_dask_proxy(model: Any) -> bool:
    """A DASK-loaded model: served from actors and publishable by name."""
    return getattr(model, "BACKEND_TYPE", None) == "DASK" and callable(
        getattr(model, "publish", None)
    )


def compose_job_id(instance_name: str) -> str:
    """As caikit composes job ids: ``<reversible hash of the predictor's name>:<uuid>``."""
    return DaskJobPredictorFuture.ID_DELIMITER.join(
        [ReversibleHasher.hash(instance_name), str(uuid.uuid4())]
    )


def _raise_unsendable(method: str, args: tuple, kwargs: dict, err: Exception) -> None:
    """Name the argument that cannot be pickled (Dask's own error names only the graph)."""
    named = [(f"argument {index}", value) for index, value in enumerate(args)]
    named += [(f"argument {name!r}", value) for name, value in kwargs.items()]
    for label, value in named:
        try:
            cloudpickle.dumps(value)
        except Exception as why:  # noqa: BLE001 - any pickling failure is the answer
            error(
                "<DSK70000007E>",
                TypeError(
                    f"The {label} of {method} ({type(value).__name__}) cannot be sent to a "
                    f"Dask worker: {why}. Pass plain data or caikit data model objects."
                ),
            )


class DaskJobPredictor(JobPredictorBase):
    __doc__ = __doc__

    name = "DASK"

    def __init__(self, config: aconfig.Config, instance_name: str):
        self._instance_name = instance_name
        self.settings = JobPredictorSettings.from_mapping(
            config, f"model_management.job_predictors.{instance_name}.config"
        )
        self.connection = DaskConnection.from_config(self.settings.connection)
        self._acquired = False
        self._futures: dict[str, DaskJobPredictorFuture] = {}
        self._lock = threading.Lock()
        # A local model's scattered archive, shipped once per model instance.
        self._archives: weakref.WeakKeyDictionary[ModuleBase, tuple[Future, LocalModelRef]] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def client(self) -> Client:
        with self._lock:
            if not self._acquired:
                self.connection.acquire()
                self._acquired = True
        return self.connection.client

    def close(self) -> None:
        """Let go of the connection (jobs keep running on the cluster)."""
        with self._lock:
            acquired, self._acquired = self._acquired, False
        if acquired:
            self.connection.release()

    # -- caikit interface ------------------------------------------------------------------

    def predict(
        self,
        model_instance: ModuleBase,
        prediction_func_name: str,
        *args: Any,
        external_inference_id: str | None = None,
        external_prediction_id: str | None = None,
        **kwargs: Any,
    ) -> DaskJobPredictorFuture:
        """Start ``model_instance.<prediction_func_name>(*args, **kwargs)`` on Dask."""
        self._purge_old_futures()
        error.type_check("<DSK70000003E>", ModuleBase, model_instance=model_instance)
        error.value_check(
            "<DSK70000004E>",
            callable(getattr(model_instance, prediction_func_name, None)),
            "{} has no method {!r} to run as a prediction job",
            type(model_instance).__name__,
            prediction_func_name,
        )
        external_id = external_prediction_id or external_inference_id
        if external_id:
            self._refuse_running_duplicate(external_id)
        job_id = external_id or compose_job_id(self._instance_name)
        client = self.client
        model_ref, payload = self._model_ref(client, model_instance)
        args = tuple(sendable(value) for value in args)
        kwargs = {name: sendable(value) for name, value in kwargs.items()}
        key = f"caikit-prediction-{uuid.uuid4().hex}"
        on_scheduler.write_record(client, job_id, on_scheduler.new_record(key, time.time()))
        try:
            dask_future = client.submit(
                run_prediction,
                job_id,
                model_ref,
                payload,
                prediction_func_name,
                args,
                kwargs,
                key=key,
                pure=False,
            )
        except Exception as err:
            on_scheduler.forget(client, job_id, key)
            _raise_unsendable(prediction_func_name, args, kwargs, err)
            raise
        client.publish_dataset(
            override=True, **{on_scheduler.dataset_name(job_id): {"future": dask_future}}
        )
        future = DaskJobPredictorFuture(job_id, client, dask_future)
        with self._lock:
            self._futures[job_id] = future
        return future

    def get_prediction_future(self, future_id: str) -> DaskJobPredictorFuture:
        """This process's job, or the job found on the scheduler (submitted anywhere)."""
        self._purge_old_futures()
        with self._lock:
            future = self._futures.get(future_id)
        if future is not None:
            return future
        error.type_check("<DSK70000005E>", str, future_id=future_id)
        client = self.client
        try:
            record = client.get_dataset(on_scheduler.dataset_name(future_id))
        except KeyError:
            raise CaikitCoreException(
                status_code=CaikitCoreStatusCode.NOT_FOUND,
                message=f"Unknown prediction_id: {future_id}",
            ) from None
        future = DaskJobPredictorFuture(future_id, client, record["future"])
        if self._expired(future, datetime.now()):
            future.forget()
            raise CaikitCoreException(
                status_code=CaikitCoreStatusCode.NOT_FOUND,
                message=f"Prediction {future_id} ended longer than retention_duration ago",
            )
        with self._lock:
            future = self._futures.setdefault(future_id, future)
        return future

    # -- internals -------------------------------------------------------------------------

    def _model_ref(self, client: Client, model: ModuleBase) -> tuple[Any, Any]:
        if is_dask_proxy(model):
            name = model.published_as or model.publish(f"caikit-dask-job-model-{uuid.uuid4()}")
            return PublishedModelRef(name, model.module_class.__module__), None
        with self._lock:
            cached = self._archives.get(model)
        if cached is None:
            try:
                archive, pickled = model.as_bytes(), False
            except NotImplementedError:
                archive, pickled = cloudpickle.dumps(model), True
            scattered = client.scatter(archive, hash=True)
            ref = LocalModelRef(type(model).__module__, pickled, str(scattered.key))
            cached = (scattered, ref)
            with self._lock:
                self._archives[model] = cached
        scattered, ref = cached
        return ref, scattered

    def _refuse_running_duplicate(self, job_id: str) -> None:
        try:
            current = self.get_prediction_future(job_id)
        except CaikitCoreException as err:
            if err.status_code is CaikitCoreStatusCode.NOT_FOUND:
                return
            raise
        error.value_check(
            "<DSK70000006E>",
            current.get_info().status.is_terminal,
            "Cannot restart prediction {} that is currently running; wait for it or cancel it",
            job_id,
        )

    def _expired(self, future: DaskJobPredictorFuture, now: datetime) -> bool:
        retention = self.settings.retention_duration
        if retention is None or not future.future.done():
            return False
        ended = future.get_info().completion_time
        return ended is not None and ended + retention < now

    def _purge_old_futures(self) -> None:
        """Forget (on the scheduler too) the jobs that ended before retention_duration."""
        if self.settings.retention_duration is None:
            return
        now = datetime.now()
        with self._lock:
            futures = list(self._futures.items())
        expired = [(job_id, f) for job_id, f in futures if self._expired(f, now)]
        with self._lock:
            for job_id, future in expired:
                if self._futures.get(job_id) is future:
                    del self._futures[job_id]
        for _, future in expired:
            future.forget()


def register_job_predictor() -> None:
    """Make ``type: DASK`` under ``model_management.job_predictors`` resolve to this."""
    job_predictor_factory.register(DaskJobPredictor)
