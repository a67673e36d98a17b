"""A module whose default save can't be loaded back on its own, as a prompt-tuned model that
saves only its prompt vectors: ``load`` needs the base it was trained from, which the save
leaves out. Sent to the test cluster's workers with ``Client.upload_file``."""

from caikit.core import ModuleBase, module
from caikit.core.modules import ModuleLoader, ModuleSaver

from caikit_dask.example import EchoResult, EchoTask

HALF_SAVED_MODULE_ID = "5b7758b7-10cc-4b57-98ac-c47fbbdb8587"
LOAD_ATTEMPTS: list[str] = []  # every load() in this process, for the tests to count


@module(
    id=HALF_SAVED_MODULE_ID, name="training test half-saved model", version="0.1.0", task=EchoTask
)
class HalfSavedModel(ModuleBase):
    def __init__(self, base: str, suffix: str):
        super().__init__()
        self.base = base
        self.suffix = suffix

    @classmethod
    def train(cls, base: str, suffix: str) -> "HalfSavedModel":
        return cls(base, suffix)

    def save(self, model_path, **kwargs):
        with ModuleSaver(self, model_path=model_path) as saver:
            saver.update_config({"suffix": self.suffix})  # the base is left out

    @classmethod
    def load(cls, model_path, base: str | None = None, **kwargs):
        LOAD_ATTEMPTS.append(str(model_path))
        if base is None:
            raise ValueError("base not provided: the saved model holds only its suffix")
        return cls(base, ModuleLoader(model_path).config.suffix)

    @EchoTask.taskmethod()
    def run(self, text: str) -> EchoResult:
        return EchoResult(text=self.base + text + self.suffix)
