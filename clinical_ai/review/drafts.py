"""A decision typed but not yet signed, kept in the person's session so that it is never lost: when their
session ended while they were filling the form (they sign in again and find it filled in), and when the
form came back with something to correct (a reload finds it again).

A draft holds what the form holds except the password (the outcome, the reason, the changed condition,
the comment) and names the user it was typed for, proved by a signed token the form carries: a session
that expired is anonymous when the form arrives, and the next person to sign in on that screen must not
be shown someone else's draft. A draft is dropped once the decision is signed or refused as too late, when
someone else signs in and opens the review pages, and with the session (sign-out, 8 hours at most). It is
never logged, and its values are sealed with the key ring (the session table holds no comment in clear),
bound to the suggestion and the user, like the signed decision that will keep them.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.core import signing

from clinical_ai.core.crypto import DecryptionError, SealedValue
from clinical_ai.core.sealing import open_json, seal_json
from clinical_ai.review.models import Suggestion

DRAFTS_SESSION_KEY = "review_drafts"
# What a draft keeps of the sign-off form: everything the clinician chose or typed, never the password.
DRAFT_FIELDS = (
    "outcome",
    "reason_code",
    "code",
    "clinical_status",
    "verification_status",
    "onset",
    "comment",
)
MAX_DRAFTS = 10  # a session keeps the latest few only
_MAX_VALUE = 4000
_OWNER_SALT = "clinical_ai.review.drafts.owner"


@dataclass(frozen=True)
class Draft:
    values: dict[str, str]
    kept_while_signing_in: bool  # kept for a person whose session ended: the page says so once


def draft_owner_token(*, user: Any, suggestion: Suggestion) -> str:
    """The token the sign-off form carries: this form was shown to ``user`` for ``suggestion``."""
    return signing.dumps([str(user.pk), str(suggestion.external_id)], salt=_OWNER_SALT, compress=True)


def draft_owner(*, token: str, external_id: Any) -> str | None:
    """The user id a form's token names, if the token is ours, recent, and for this suggestion."""
    try:
        owner, for_suggestion = signing.loads(token, salt=_OWNER_SALT, max_age=settings.SESSION_COOKIE_AGE)
    except (signing.BadSignature, TypeError, ValueError):
        return None
    return str(owner) if str(for_suggestion) == str(external_id) else None


def _associated_data(external_id: Any, owner_id: str) -> str:
    return f"review-draft:{external_id}:{owner_id}"


def _seal(values: dict[str, str], *, external_id: Any, owner_id: str) -> list[str]:
    """JSON-safe for the session: key id, nonce and ciphertext (base64)."""
    sealed = seal_json(values, associated_data=_associated_data(external_id, owner_id))
    return [
        sealed.key_id,
        base64.b64encode(sealed.nonce).decode(),
        base64.b64encode(sealed.ciphertext).decode(),
    ]


def _open(kept: Any, *, external_id: Any, owner_id: str) -> dict[str, str]:
    """The values of a draft; none where it cannot be opened (a key retired since, a changed session)."""
    try:
        key_id, nonce, ciphertext = kept
        values = open_json(
            SealedValue(str(key_id), base64.b64decode(nonce), base64.b64decode(ciphertext)),
            associated_data=_associated_data(external_id, owner_id),
        )
    except (DecryptionError, TypeError, ValueError):
        return {}
    if not isinstance(values, dict):
        return {}
    return {str(k): str(v) for k, v in values.items() if k in DRAFT_FIELDS}


def _drafts(session: SessionBase) -> dict[str, Any]:
    kept = session.get(DRAFTS_SESSION_KEY)
    return dict(kept) if isinstance(kept, dict) else {}


def draft_keep(
    *,
    session: SessionBase,
    external_id: Any,
    owner_id: str,
    data: Mapping[str, Any],
    kept_while_signing_in: bool = False,
) -> None:
    """Keep the form's values (``request.POST``) for ``owner_id`` and this suggestion, replacing an older
    draft of it."""
    values = {name: str(data.get(name) or "")[:_MAX_VALUE] for name in DRAFT_FIELDS if data.get(name)}
    drafts = _drafts(session)
    drafts.pop(str(external_id), None)
    drafts[str(external_id)] = {
        "owner": owner_id,
        "sealed": _seal(values, external_id=external_id, owner_id=owner_id),
        "reauth": kept_while_signing_in,
        "kept": int(time.time()),
    }
    session[DRAFTS_SESSION_KEY] = dict(list(drafts.items())[-MAX_DRAFTS:])


def draft_take(*, session: SessionBase, external_id: Any, user: Any) -> Draft | None:
    """The draft of this suggestion typed by ``user``, to fill the form again. Drafts typed by anyone else
    are dropped here; the note that it was kept while signing in is shown once."""
    drafts = _drafts(session)
    mine = {
        key: kept
        for key, kept in drafts.items()
        if isinstance(kept, dict) and kept.get("owner") == str(user.pk)
    }
    kept = mine.get(str(external_id))
    draft = None
    if kept is not None:
        draft = Draft(
            values=_open(kept.get("sealed"), external_id=external_id, owner_id=str(user.pk)),
            kept_while_signing_in=bool(kept.get("reauth")),
        )
        mine[str(external_id)] = {**kept, "reauth": False}
    if mine != drafts:
        session[DRAFTS_SESSION_KEY] = mine
    return draft


def draft_drop(*, session: SessionBase, external_id: Any) -> None:
    """The decision was signed (or can no longer be): its draft goes."""
    drafts = _drafts(session)
    if drafts.pop(str(external_id), None) is not None:
        session[DRAFTS_SESSION_KEY] = drafts


def drafts_of_others_drop(*, session: SessionBase, user: Any) -> None:
    """Someone else signed in on this screen: the drafts typed by anyone but ``user`` go."""
    drafts = _drafts(session)
    mine = {
        key: kept
        for key, kept in drafts.items()
        if isinstance(kept, dict) and kept.get("owner") == str(user.pk)
    }
    if mine != drafts:
        session[DRAFTS_SESSION_KEY] = mine
