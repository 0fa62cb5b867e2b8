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


class NoAddressAvailable(Conflict):
    pass
