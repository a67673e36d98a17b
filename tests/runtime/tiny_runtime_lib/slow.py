"""A greeter that takes its time: the backpressure tests fill a model's queue with it."""

# caikit compares method annotations with these typing generics.
# ruff: noqa: UP035
import time
from typing import Iterable

from caikit.core import ModuleBase, ModuleConfig, ModuleSaver, TaskBase, module, task

from .greeting import Greeting


@task(
    unary_parameters={"name": str},
    unary_output_type=Greeting,
    streaming_output_type=Iterable[Greeting],
)
class SlowGreetingTask(TaskBase):
    """Greet someone after ``seconds``; the stream greets at once and ends after ``seconds``."""


@module(
    id="7a4c2f0e-7d43-4b7f-9a57-2f1d5bd0a002",
    name="SlowGreeter",
    version="0.0.1",
    task=SlowGreetingTask,
)
class SlowGreeter(ModuleBase):
    """Sleeps ``seconds`` in each call, as a busy model would."""

    @SlowGreetingTask.taskmethod()
    def run(self, name: str, seconds: float = 0.0) -> Greeting:
        time.sleep(seconds)
        return _greeting(f"Hello, {name}!")

    @SlowGreetingTask.taskmethod(output_streaming=True)
    def run_stream(self, name: str, seconds: float = 0.0) -> Iterable[Greeting]:
        yield _greeting(f"Hello, {name}!")
        time.sleep(seconds)
        yield _greeting(f"Bye, {name}!")

    def save(self, model_path: str) -> None:
        with ModuleSaver(self, model_path=model_path):
            pass

    @classmethod
    def load(cls, model_path) -> "SlowGreeter":
        ModuleConfig.load(model_path)
        return cls()


def _greeting(text: str) -> Greeting:
    return Greeting(text=text, length=len(text))
