"""The request id that ties an HTTP request, its audit rows and its jobs together."""

from __future__ import annotations

import re
import uuid

_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def request_id_from_header(value: str | None) -> str:
    """Take the caller's X-Request-Id when it is a sane token, else mint one (never echo arbitrary input)."""
    if value and _ACCEPTABLE.match(value):
        return value
    return str(uuid.uuid4())
