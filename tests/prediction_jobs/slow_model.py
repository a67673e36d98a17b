"""A module whose prediction takes as long as asked (in short slices, so it can be
destroyed midway, optionally recording its progress to a file) or fails with its
own exception type. Sent to the test cluster's workers with ``Client.upload_file``."""

import time
from pathlib import Path

from caikit.core import ModuleBase, module
from caikit.core.modules import ModuleLoader, ModuleSaver

from caikit_dask.example import EchoResult, EchoTask

SLOW_MODULE_ID = "4c1f3a52-8d0e-4b8e-9a55-3f4d0a6c2b17"


class SlowModelError(RuntimeError):
    """Raised by ``run(fail=...)``; its type must reach the caller unchanged."""


@module(id=SLOW_MODULE_ID, name="prediction jobs test slow model", version="0.1.0", task=EchoTask)
class SlowModel(ModuleBase):
    def __init__(self, prefix: str = ""):
        super().__init__()
        self.prefix = prefix

    def save(self, model_path, **kwargs):
        with ModuleSaver(self, model_path=model_path) as saver:
            saver.update_config({"prefix": self.prefix})

    @classmethod
    def load(cls, model_path, **kwargs):
        return cls(prefix=ModuleLoader(model_path).config.prefix or "")

    @EchoTask.taskmethod()
    def run(
        self, text: str, seconds: float = 0.0, fail: str = "", progress: str = ""
    ) -> EchoResult:
        """``progress``: a file that holds the slices done so far, and ``<progress>.ended``
        written when the loop is left (also when it is interrupted)."""
        deadline = time.monotonic() + seconds
        steps = 0
        try:
            while time.monotonic() < deadline:
                time.sleep(0.01)
                steps += 1
                if progress:
                    Path(progress).write_text(str(steps))
        finally:
            if progress:
                Path(progress + ".ended").write_text(str(steps))
        if fail:
            raise SlowModelError(fail)
        return EchoResult(text=self.prefix + text)
