"""`torch.compile` for the lean decoder's passes, with eager as the fallback."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch

logger = logging.getLogger(__name__)


def _is_compile_error(exc: Exception) -> bool:
    """Whether compiling raised `exc`: dynamo's errors (inductor's arrive wrapped in them) and
    inductor's own for a missing or failing C++ compiler (imported here, when one happened:
    importing the compiler's modules up front would slow every import of the backend)."""
    import torch._dynamo.exc
    import torch._inductor.exc

    kinds = (
        torch._dynamo.exc.TorchDynamoException,
        torch._inductor.exc.InvalidCxxCompiler,
        torch._inductor.exc.CppCompileError,
    )
    return isinstance(exc, kinds)


def mark_static(
    tensors: Iterable[torch.Tensor | None], dims: tuple[int, ...] | None = None
) -> None:
    """Tell the compiler these sizes never change (a model's weights, its adapter's deltas, a
    cache's heads and head size), so that only rows and lengths are symbolic: every call then
    checks fewer guards (a decode step had ~190 relating symbolic weight sizes), and kernels
    are specialised to the model's shapes."""
    import torch._dynamo

    for t in tensors:
        if t is None:
            continue
        for dim in dims if dims is not None else range(t.dim()):
            torch._dynamo.mark_static(t, dim)


# Dynamo's settings for the calls of compiled passes, restored after each:
# - Model constants (norm epsilons, attention scale) are Python floats. With dynamic sizes,
#   dynamo would make each a symbolic input, specialise it while compiling and restart the
#   whole trace (~40% more compile time, and a graph the disk cache could not keep).
# - Every decoder's passes share their functions' code, and dynamo keeps at most
#   `recompile_limit` (8) compiled versions of one code before running it eagerly with only a
#   warning: with or without padding, a batch of one, scoring and training, for a student and
#   its teachers, a run with several teachers would pass it.
_COMPILER_SETTINGS = {"specialize_float": True, "recompile_limit": 64}


class CompiledOrEager:
    """`fn`, compiled with `torch.compile` when `enabled`: sizes (rows, sequence length, cache
    capacity) are symbolic, so a new batch shape does not recompile (a size of 1 does, once).
    Where compiling fails (no C++ compiler for CPU kernels, an op it cannot handle, a graph
    break: `fn` compiles whole or not at all), it says why, once, and runs `fn` eagerly from
    then on."""

    def __init__(
        self,
        fn: Callable[..., Any],
        enabled: bool,
        what: str,
        options: dict[str, object] | None = None,
    ):
        self.fn, self.what = fn, what
        self.compiled = (
            torch.compile(fn, dynamic=True, fullgraph=True, options=options) if enabled else None
        )

    def __call__(self, *args: object) -> Any:
        if self.compiled is None:
            return self.fn(*args)
        config = torch._dynamo.config
        saved = {name: getattr(config, name) for name in _COMPILER_SETTINGS}
        for name, value in _COMPILER_SETTINGS.items():
            setattr(config, name, value)
        try:
            return self.compiled(*args)
        except Exception as exc:
            if not _is_compile_error(exc):  # an error of the pass itself (say, out of memory)
                raise
            logger.warning("compiling %s failed; it runs eagerly: %s", self.what, exc)
            self.compiled = None
            return self.fn(*args)
        finally:
            for name, value in saved.items():
                setattr(config, name, value)
