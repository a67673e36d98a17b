"""A tiny caikit library served by the runtime tests: a Greeter, and a slow one."""

from caikit.core import ModuleBase, ModuleConfig, ModuleSaver, TaskBase, module, task

from .greeting import Greeting
from .slow import SlowGreeter, SlowGreetingTask

__all__ = ["Greeting", "GreetingTask", "Greeter", "SlowGreeter", "SlowGreetingTask"]


@task(required_parameters={"name": str}, output_type=Greeting)
class GreetingTask(TaskBase):
    """Greet someone by name."""


@module(
    id="7a4c2f0e-7d43-4b7f-9a57-2f1d5bd0a001",
    name="Greeter",
    version="0.0.1",
    task=GreetingTask,
)
class Greeter(ModuleBase):
    """Says ``<greeting>, <name>!``; the greeting is the model's only state."""

    def __init__(self, greeting: str = "Hello"):
        super().__init__()
        self.greeting = greeting

    def run(self, name: str) -> Greeting:
        text = f"{self.greeting}, {name}!"
        return Greeting(text=text, length=len(text))

    @classmethod
    def train(cls, greeting: str = "Hello") -> "Greeter":
        return cls(greeting=greeting)

    def save(self, model_path: str) -> None:
        with ModuleSaver(self, model_path=model_path) as saver:
            saver.update_config({"greeting": self.greeting})

    @classmethod
    def load(cls, model_path) -> "Greeter":
        config = ModuleConfig.load(model_path)
        return cls(greeting=config.greeting)
