"""``DaskModelTrainer``: caikit's model trainer (ADR 020) of type DASK.

It keeps caikit's LOCAL trainer semantics (ids, save paths, external ids,
retention) and hands the work to ``DaskBackend``. Beyond caikit's status and
cancel it manages trainings from any process: ``list_trainings``, each future's
``logs`` and ``delete_training``.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aconfig
from caikit.core.exceptions.caikit_core_exception import (
    CaikitCoreException,
    CaikitCoreStatusCode,
)
from caikit.core.model_management.local_job_base import LocalJobBase
from caikit.core.model_management.model_trainer_base import (
    ModelTrainerBase,
    ModelTrainerFutureBase,
    TrainingInfo,
)
from caikit.core.modules import ModuleBase
from caikit.interfaces.common.data_model.stream_sources import S3Path

from .backend import DaskBackend
from .config import BackendConfig
from .errors import error
from .training.handle import DaskTraining


class DaskModelTrainFuture(ModelTrainerFutureBase):
    """caikit's view of one Dask training."""

    def __init__(self, trainer_name: str, training_id: str, use_reversible_hash: bool):
        super().__init__(
            future_name=trainer_name,
            future_id=training_id,
            use_reversible_hash=use_reversible_hash,
        )
        self.training: DaskTraining | None = None

    @classmethod
    def attach(cls, training: DaskTraining) -> DaskModelTrainFuture:
        """The future of a training found on the scheduler (by id or in the listing)."""
        future = cls("", training.id, use_reversible_hash=False)
        future._save_path = training.save_path
        future.training = training
        return future

    @property
    def completion_time(self) -> datetime | None:
        return self.get_info().completion_time

    def get_info(self) -> TrainingInfo:
        return self.training.info()

    def cancel(self) -> None:
        self.training.cancel()

    def wait(self, timeout: float | None = None, progress: Any = False) -> None:
        """Block until the training ends; ``progress=True`` shows a progress bar meanwhile."""
        if progress:
            from .progress import wait_with_progress

            wait_with_progress(self, progress, timeout)
        else:
            self.training.wait(timeout)

    def load(self) -> ModuleBase:
        return self.training.result()

    def logs(self, follow: bool = False) -> list[str] | Iterator[str]:
        """The lines the training logged on its worker (the trainer's last ``log_lines``),
        from any process; with ``follow``, an iterator over them and each new line, ending
        when the training ends."""
        return self.training.logs(follow=follow)

    def __repr__(self) -> str:
        from .display import training_repr

        return training_repr(self)

    def _repr_html_(self) -> str:
        from .display import training_html

        return training_html(self)


class DaskModelTrainer(ModelTrainerBase):
    __doc__ = __doc__

    name = "DASK"
    ModelFutureBase = DaskModelTrainFuture

    def __init__(self, config: aconfig.Config, instance_name: str):
        self._instance_name = instance_name
        self.backend = DaskBackend(
            config,
            path=f"model_management.trainers.{instance_name}.config",
            allowed=BackendConfig.TRAINER_KEYS,
        )
        self._futures: dict[str, DaskModelTrainFuture] = {}
        self._futures_lock = threading.Lock()

    @property
    def settings(self) -> BackendConfig:
        """The config, parsed once by the backend (and again only on ``register_config``)."""
        return self.backend.settings

    def train(
        self,
        module_class: type[ModuleBase],
        *args: Any,
        save_path: str | S3Path | None = None,
        save_with_id: bool = False,
        model_name: str | None = None,
        external_training_id: str | None = None,
        **kwargs: Any,
    ) -> DaskModelTrainFuture:
        """Submit the training to Dask and return its future at once."""
        self._purge_old_futures()
        error.subclass_check("<DSK40000001E>", module_class, ModuleBase)
        if isinstance(save_path, S3Path):
            # caikit's LOCAL trainer's words: callers (caikit.runtime's tests) match on them
            error("<DSK40000002E>", ValueError("S3 output path not supported by this runtime"))
        if external_training_id:
            self._refuse_running_duplicate(external_training_id)
        future = DaskModelTrainFuture(
            self._instance_name,
            external_training_id or str(uuid.uuid4()),
            use_reversible_hash=external_training_id is None,
        )
        future._save_path = LocalJobBase.LocalJobFuture._save_path_with_id(
            save_path, save_with_id, future.id, model_name, None
        )
        future.training = self.backend.submit_training(
            module_class, args, kwargs, save_path=future.save_path, training_id=future.id
        )
        with self._futures_lock:
            previous = self._futures.get(future.id)
            self._futures[future.id] = future
        if previous is not None:
            previous.training.release()
        return future

    def get_model_future(self, training_id: str) -> DaskModelTrainFuture:
        """The local future, or the training found on the scheduler (from another process)."""
        self._purge_old_futures()
        with self._futures_lock:
            future = self._futures.get(training_id)
        if future is not None:
            return future
        error.type_check("<DSK40000003E>", str, training_id=training_id)
        training = self.backend.find_training(training_id)
        future = DaskModelTrainFuture.attach(training)
        with self._futures_lock:
            self._futures.setdefault(training_id, future)
        return future

    def list_trainings(self) -> list[DaskModelTrainFuture]:
        """The futures of every training on the scheduler, submitted by any process.

        One scheduler call reads them all with their status; ``get_model_future`` then
        finds each of them here without another.
        """
        self._purge_old_futures()
        futures = []
        for training in self.backend.list_trainings():
            with self._futures_lock:
                future = self._futures.get(training.id)
                if future is None or future.training is not training:
                    future = self._futures[training.id] = DaskModelTrainFuture.attach(training)
            futures.append(future)
        return futures

    def delete_training(self, training_id: str, delete_results: bool = False) -> None:
        """Cancel the training if it runs and forget it on the scheduler: its record, log
        and result. ``delete_results`` also removes its ``save_path``. NOT_FOUND if unknown.
        """
        future = self.get_model_future(training_id)
        with self._futures_lock:
            if self._futures.get(training_id) is future:
                del self._futures[training_id]
        future.training.delete()
        if delete_results and future.save_path:
            _remove_results(future.save_path)

    def _refuse_running_duplicate(self, training_id: str) -> None:
        try:
            current = self.get_model_future(training_id)
        except CaikitCoreException as err:
            if err.status_code is CaikitCoreStatusCode.NOT_FOUND:
                return
            raise
        error.value_check(
            "<DSK40000004E>",
            current.get_info().status.is_terminal,
            "Cannot restart training {} that is currently running; wait for it or cancel it",
            training_id,
        )

    def _purge_old_futures(self) -> None:
        """Forget (and delete the results of) trainings older than retention_duration."""
        retention = self.settings.retention_duration
        if retention is None:
            return
        now = datetime.now()
        with self._futures_lock:
            expired = {
                training_id: future
                for training_id, future in self._futures.items()
                if (done := future.training.info().completion_time) and done + retention < now
            }
            for training_id in expired:
                self._futures.pop(training_id, None)
        for future in expired.values():
            future.training.release()
            if future.save_path:
                _remove_results(future.save_path)


def _remove_results(save_path: str) -> None:
    """Remove a training's saved model (a directory or a file), if it is there."""
    path = Path(save_path)
    if path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)
