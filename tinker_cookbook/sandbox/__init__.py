"""Sandboxes for tool-using agents: `SandboxInterface` and the engine-free `LocalSandbox`."""

from tinker_cookbook.sandbox.base import CommandResult, SandboxError, SandboxInterface
from tinker_cookbook.sandbox.local import LocalSandbox, LocalSandboxConfig, available_backends

__all__ = [
    "CommandResult",
    "LocalSandbox",
    "LocalSandboxConfig",
    "SandboxError",
    "SandboxInterface",
    "available_backends",
]
