"""Errors shared by the layers. Each carries a message fit for an operator."""


class ClouddiscoError(Exception):
    pass


class NotFound(ClouddiscoError):
    pass


class Conflict(ClouddiscoError):
    pass


class InvalidInput(ClouddiscoError):
    """Bad input from a client; ``field`` names the offending field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidMarker(InvalidInput):
    """A pagination marker that names no item the caller may see."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="marker")


class NoAddressAvailable(Conflict):
    pass


class DatabaseUnavailable(ClouddiscoError):
    """The database cannot be used now: unreachable, the connection lost, or
    its Galera node outside the Primary Component (1047, 1180), for longer
    than ``[database] reconnect_retry_time``. The transaction did not commit:
    nothing was changed. The API answers 503 with Retry-After."""

    retry_after = 5  # seconds, the API's Retry-After


class DatabaseOutcomeUnknown(DatabaseUnavailable):
    """The connection failed while COMMIT was in flight, and the call is not
    one that may be replayed: the change may or may not have been applied."""
