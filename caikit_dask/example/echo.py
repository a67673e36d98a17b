"""A tiny module whose ``run`` takes caikit's request context.

It exists so runtime tests can check that a context-taking module is served
and forwarded correctly. The context is optional: without a runtime there is
none, and a proxy that cannot ship a gRPC/HTTP context across processes may
pass a plain mapping of metadata instead.
"""

# caikit parses the run signature from raw annotations (see text_classifier.py).
# ruff: noqa: UP007, UP045

from collections.abc import Mapping
from typing import Any, Union

import alog
from caikit.core import ModuleBase, module
from caikit.core.data_model.runtime_context import RuntimeServerContextType
from caikit.core.modules import ModuleConfig, ModuleLoader, ModuleSaver

from .data_model import EchoResult
from .tasks import EchoTask

log = alog.use_channel("CKD-EXMPL")

ECHO_MODULE_ID = "9c509e82-5e65-4310-a1b8-01f50b4b75c6"
DEFAULT_METADATA_KEY = "x-echo"


def context_metadata_value(context: Any, key: str) -> str:
    """Read one metadata entry from a gRPC context, an HTTP request or a mapping.

    gRPC metadata keys are lower case and HTTP headers case-insensitive, so the
    lookup is done on the lower-cased key.
    """
    if context is None:
        return ""
    key = key.lower()
    if isinstance(context, Mapping):
        lowered = {str(k).lower(): v for k, v in context.items()}
        value = lowered.get(key, "")
    elif getattr(context, "headers", None) is not None:  # fastapi / starlette Request
        value = context.headers.get(key, "")
    elif callable(getattr(context, "invocation_metadata", None)):  # grpc.ServicerContext
        value = next((v for k, v in context.invocation_metadata() or () if k.lower() == key), "")
    else:
        value = ""
    if isinstance(value, bytes):  # "-bin" gRPC metadata
        value = value.decode("utf-8", "replace")
    return str(value)


@module(
    id=ECHO_MODULE_ID,
    name="caikit-dask example echo with context",
    version="0.1.0",
    task=EchoTask,
)
class EchoWithContext(ModuleBase):
    """Echo ``prefix + text`` and report what the request context carried."""

    def __init__(self, prefix: str = ""):
        super().__init__()
        self.prefix = prefix

    @classmethod
    def train(cls, prefix: str = "") -> "EchoWithContext":
        """Nothing to learn; exists so the module can be trained through caikit like any other."""
        return cls(prefix=prefix or "")

    def save(self, model_path: str, **kwargs) -> None:
        with ModuleSaver(self, model_path=model_path) as saver:
            saver.update_config({"prefix": self.prefix})

    @classmethod
    def load(cls, model_path: Union[str, ModuleConfig], **kwargs) -> "EchoWithContext":
        return cls(prefix=ModuleLoader(model_path).config.prefix or "")

    @EchoTask.taskmethod(context_arg="context")
    def run(
        self,
        text: str,
        metadata_key: str = DEFAULT_METADATA_KEY,
        context: RuntimeServerContextType = None,
    ) -> EchoResult:
        """``context`` is filled in by caikit.runtime (gRPC context or HTTP request)."""
        return EchoResult(
            text=self.prefix + text,
            has_context=context is not None,
            context_type="" if context is None else type(context).__name__,
            metadata_value=context_metadata_value(context, metadata_key or DEFAULT_METADATA_KEY),
        )
