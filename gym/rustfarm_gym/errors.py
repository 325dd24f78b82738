"""Exceptions raised by the rust-farm Gymnasium layer."""

from __future__ import annotations


class FarmError(RuntimeError):
    """Base class of every error of this package."""


class ServerStartError(FarmError):
    """``farmctl sim serve`` could not be found or started."""


class ServerUnreachableError(FarmError):
    """No FarmControl server answered at the address."""


class TransportUnavailableError(FarmError):
    """The gRPC transport asked for (``transport="native"`` or
    ``RUSTFARM_TRANSPORT``) cannot be used, e.g. the native extension
    ``rustfarm_native`` is not installed."""


class SpecMismatchError(FarmError):
    """The server's observation layout version differs from this package's."""


class FarmRpcError(FarmError):
    """A FarmControl call failed; carries the gRPC status code and the
    server's message."""

    def __init__(self, method: str, code: str, message: str) -> None:
        self.method = method
        self.code = code
        self.message = message
        super().__init__(f"FarmControl.{method} failed ({code}): {message}")


class InvalidArgumentError(FarmRpcError, ValueError):
    """The server refused a request as invalid (e.g. a malformed scenario or an
    unknown option); ``message`` is the server's explanation."""
