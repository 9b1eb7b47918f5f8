"""Settings of the in-process backend."""

from __future__ import annotations

import chz


@chz.chz
class LocalBackendConfig:
    """How the local backend runs; the defaults suit a laptop CPU and a single GPU alike.

    Each `ServiceClient` keeps its own settings: the batch limits travel with its requests, and
    a model is shared only by clients whose `device`, `use_bf16`, `gradient_checkpointing` and
    `compile` agree (others get their own copy of it), so no client changes another's behaviour.
    """

    # "auto": CUDA when available, else CPU. Or "cpu", "cuda", "cuda:1", ...
    device: str = "auto"
    # bf16 autocast for the matmuls (log-softmax stays fp32): 2-3x faster on CPU and GPU.
    use_bf16: bool = True
    # Where `save_state` / `save_weights_for_sampler` put checkpoints (default: the cache).
    checkpoint_dir: str | None = None
    # Most tokens (padded) one scoring forward pass of this client's requests may hold.
    max_batch_tokens: int = 32768
    # Most tokens (padded) per training micro-batch (gradients accumulate across them).
    max_train_batch_tokens: int = 8192
    # Recompute layer activations in backward (for long sequences on large models).
    gradient_checkpointing: bool = False
    # torch.compile the passes of models the lean decoder runs (each sampling step, scoring,
    # the training forward and backward): fewer, fused kernels per step, after a one-time
    # compile per model (a minute or two on a small CPU; cached on disk for later runs). Pays
    # on long runs. Needs a C++ compiler on CPU; where compiling fails, the pass runs eagerly
    # and a warning says why.
    compile: bool = False
    # Most of this client's sequences decoded together by one batched sampling pass.
    max_sampling_batch: int = 64
    # How long the engine waits for more concurrent requests before it runs a batch that
    # holds this client's requests.
    gather_window_s: float = 0.001
