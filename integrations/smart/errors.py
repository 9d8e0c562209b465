"""OAuth 2.0 token endpoint errors (RFC 6749 section 5.2), as plain Python."""

from __future__ import annotations

from enum import StrEnum


class OAuthErrorCode(StrEnum):
    INVALID_REQUEST = "invalid_request"
    INVALID_CLIENT = "invalid_client"
    INVALID_GRANT = "invalid_grant"
    UNAUTHORIZED_CLIENT = "unauthorized_client"
    UNSUPPORTED_GRANT_TYPE = "unsupported_grant_type"
    INVALID_SCOPE = "invalid_scope"


class OAuthError(Exception):
    """A refused token request. ``description`` is shown to the client: it says what was wrong with the
    request, never echoes a secret, and is short enough to go into an audit row (<= 256 characters)."""

    def __init__(self, code: OAuthErrorCode, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description[:256]

    @property
    def http_status(self) -> int:
        # RFC 6749 5.2: invalid_client is 401 (the client failed to authenticate), every other error 400.
        return 401 if self.code is OAuthErrorCode.INVALID_CLIENT else 400

    def as_json(self) -> dict[str, str]:
        return {"error": str(self.code), "error_description": self.description}
