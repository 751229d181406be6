"""One table of the ways a request is refused, and what each is on either transport: the HTTP
status, the gRPC code and whether a client should retry (OTLP's rules: only 429, 502, 503 and 504,
and gRPC's UNAVAILABLE and RESOURCE_EXHAUSTED with retry information, are retried). The receiver,
both transports and the HTTP body reader all refuse by naming a reason here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["GRPC_CODES", "REASONS", "RETRY_AFTER_S", "Reason", "RefusedError"]

RETRY_AFTER_S: Final = 5
"""Seconds a client is told to wait before retrying a refusal that is worth retrying."""

GRPC_CODES: Final = {
    "OK": 0,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "UNAUTHENTICATED": 16,
}
"""gRPC status codes by name (google.rpc.Code), for the `google.rpc.Status` OTLP/HTTP answers with."""


@dataclass(frozen=True)
class Reason:
    http_status: int
    grpc_code: str
    retryable: bool


REASONS: Final = {
    "malformed": Reason(400, "INVALID_ARGUMENT", False),
    "no_length": Reason(411, "INVALID_ARGUMENT", False),
    "too_large": Reason(413, "RESOURCE_EXHAUSTED", False),
    "unsupported_media_type": Reason(415, "INVALID_ARGUMENT", False),
    "unsupported_encoding": Reason(415, "INVALID_ARGUMENT", False),
    "unsupported_transfer_coding": Reason(501, "UNIMPLEMENTED", False),
    "unauthenticated": Reason(401, "UNAUTHENTICATED", False),
    "not_found": Reason(404, "UNIMPLEMENTED", False),
    "internal": Reason(500, "INTERNAL", False),
    "unavailable": Reason(503, "UNAVAILABLE", True),
    "log_full": Reason(503, "UNAVAILABLE", True),
    "log_lost": Reason(503, "UNAVAILABLE", True),
    "log_error": Reason(503, "UNAVAILABLE", True),
    "receive_timeout": Reason(408, "DEADLINE_EXCEEDED", False),
    "busy": Reason(503, "UNAVAILABLE", True),
    "throttled": Reason(429, "UNAVAILABLE", True),
}
"""Every reason a request is refused whole, counted by that name in
`clinotel_receiver_requests_refused_total{reason=…}`."""


class RefusedError(Exception):
    """A request refused whole, for one of `REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        kind = REASONS[reason]
        self.reason = reason
        self.message = message
        self.http_status = kind.http_status
        self.grpc_code = kind.grpc_code
        self.retry_after: int | None = RETRY_AFTER_S if kind.retryable else None
