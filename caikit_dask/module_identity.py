"""What caikit's ``@module`` decorator derives and sets on a module class.

Proxies copy these to look like the module; classes sent by value leave them
out and let ``@module`` derive them again on the worker.
"""

MODULE_IDENTITY_ATTRIBUTES = (
    "MODULE_ID",
    "MODULE_NAME",
    "MODULE_VERSION",
    "MODULE_CLASS",
    "PRODUCER_ID",
    "RUN_SIGNATURE",
    "TRAIN_SIGNATURE",
    "_TASK_CLASSES",
    "_TASK_INFERENCE_SIGNATURES",
    "BACKEND_TYPE",
)
