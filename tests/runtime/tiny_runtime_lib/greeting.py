"""What the greeters return."""

from caikit.core import DataObjectBase, dataobject


@dataobject(package="tiny_runtime_lib")
class Greeting(DataObjectBase):
    """A greeting and its length."""

    text: str
    length: int
