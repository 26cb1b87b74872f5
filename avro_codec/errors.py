"""The one error type the codec raises, so callers catch one thing and route it."""


class AvroCodecError(ValueError):
    """Bytes that cannot be decoded, or a record that does not fit the schema.

    `reason` is a short stable word for headers and metrics (``not-avro``,
    ``wrong-magic-byte``, ``unknown-schema-id``, ...); the message says more.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.detail = message


class RegistryUnavailable(ConnectionError):
    """The schema registry could not be reached; the caller may retry later."""
