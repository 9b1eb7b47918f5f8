"""The in-process backend: Tinker's client API on torch + transformers + LoRA adapters."""

from tinker_cookbook.local.config import LocalBackendConfig
from tinker_cookbook.local.errors import LocalBackendError, UnknownModelError
from tinker_cookbook.local.futures import LocalFuture
from tinker_cookbook.local.models import get_tokenizer, list_builtin_models
from tinker_cookbook.local.sampling_client import SamplingClient
from tinker_cookbook.local.service_client import ServiceClient
from tinker_cookbook.local.training_client import TrainingClient

__all__ = [
    "LocalBackendConfig",
    "LocalBackendError",
    "LocalFuture",
    "SamplingClient",
    "ServiceClient",
    "TrainingClient",
    "UnknownModelError",
    "get_tokenizer",
    "list_builtin_models",
]
