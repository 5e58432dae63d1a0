"""One root exception for the project; malformed-record errors carry where they came from."""

from __future__ import annotations


class DecisionPathError(Exception):
    """Root of every error decisionpath raises on purpose. The message says what to do."""


class ParseError(DecisionPathError):
    """A record that a parser cannot turn into canonical events.

    ``reason`` is short and stable enough to group by in the dead-letter;
    ``origin`` is filled in by the collector (file and line, or topic, partition and offset).
    """

    def __init__(self, reason: str, origin: str | None = None) -> None:
        super().__init__(reason if origin is None else f"{origin}: {reason}")
        self.reason = reason
        self.origin = origin


class UnsupportedFormat(ParseError):
    """No registered parser recognises the record."""

    def __init__(self, detail: str = "", origin: str | None = None) -> None:
        super().__init__("unsupported format" + (f": {detail}" if detail else ""), origin)


class ConfigError(DecisionPathError):
    """Bad command-line arguments or settings."""


class BrokerUnavailable(DecisionPathError):
    """The Kafka bootstrap servers did not answer."""
