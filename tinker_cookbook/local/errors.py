"""Errors the local backend raises for bad requests: each names the offending field and value."""


class LocalBackendError(ValueError):
    """A request the local backend cannot serve (bad input, unknown model, bad path)."""


class UnknownModelError(LocalBackendError):
    """A model name that is neither built in, a local folder, nor loadable from Hugging Face."""


def reject_tinker_uri(path: str, field: str) -> None:
    """`tinker://` paths live on the Tinker service; say so instead of a file-not-found."""
    if str(path).startswith("tinker://"):
        raise LocalBackendError(
            f"{field}={path!r} is a Tinker service path, which the local backend cannot read. "
            "Run with backend=tinker (and TINKER_API_KEY set) to use it, or pass a local "
            "checkpoint directory."
        )
