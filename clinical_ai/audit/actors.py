"""Who an audit row's actor is, in words, and which actors a search for a name means. Display only: the rows
keep ``actor_type`` and ``actor_id`` as recorded (the chain covers them), names are looked up when shown.

People are this project's users ("Wanda Ward (dr-ward)"). Actor types that belong to a layer above the audit
log (EHR clients are registered by ``integrations.smart``) register how to name and find them here from their
app's ``ready()``, so that the audit log imports nothing above it. Every lookup is one query per actor type
for a whole page of events, however many events it holds.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from django.contrib.auth import get_user_model

from clinical_ai.audit.models import ActorType, AuditEvent

ActorKey = tuple[str, str]  # (actor_type, actor_id) as recorded


@dataclass(frozen=True)
class ActorDirectory:
    """How to name the actors of one type and find them by what a person types."""

    # The names of these ids (those not found are left out): one query.
    names: Callable[[Collection[str]], Mapping[str, str]]
    # The ids a typed name or id means (exact id, or the name without regard to case): one query.
    find: Callable[[str], list[str]]


_directories: dict[str, ActorDirectory] = {}

# The workers' tasks, in words (``Actor.worker`` records ``host/task name/task id``).
WORKER_TASKS = {
    "deid.deidentify_ingest_job": "De-identification worker",
    "inference.run_models": "Model worker",
    "monitoring.compute": "Monitoring job",
}


def actor_directory_register(actor_type: str, directory: ActorDirectory) -> None:
    _directories[actor_type] = directory


def _user_names(ids: Collection[str]) -> dict[str, str]:
    pks = sorted({int(i) for i in ids if i.isdigit() and len(i) <= 18})
    if not pks:
        return {}
    names: dict[str, str] = {}
    for user in get_user_model().objects.filter(pk__in=pks).only("pk", "username", "first_name", "last_name"):
        username = user.get_username()
        full = user.get_full_name().strip()
        names[str(user.pk)] = f"{full} ({username})" if full else username
    return names


def _user_find(text: str) -> list[str]:
    users = get_user_model().objects.filter(username__iexact=text)
    return [str(pk) for pk in users.values_list("pk", flat=True)]


actor_directory_register(ActorType.USER, ActorDirectory(names=_user_names, find=_user_find))


def _worker_label(actor_id: str) -> str:
    host, _, rest = actor_id.partition("/")
    task = rest.partition("/")[0]
    what = WORKER_TASKS.get(task, f"Worker ({task})" if task else "Worker")
    return f"{what} on {host}" if host and host != "worker" else what


def actor_label(actor_type: str, actor_id: str, names: Mapping[ActorKey, str]) -> str:
    """The actor in words: a person's name and username, an EHR system's registered name, a worker's job."""
    found = names.get((actor_type, actor_id))
    if found:
        return found
    if actor_type == ActorType.USER:
        return f"Removed user (number {actor_id})"
    if actor_type == ActorType.EHR_CLIENT:
        return f"EHR system {actor_id} (no longer registered)"
    if actor_type == ActorType.WORKER:
        return _worker_label(actor_id)
    if actor_type == ActorType.SYSTEM:
        return f"System: {actor_id}"
    if actor_type == ActorType.ANONYMOUS:
        return "Not signed in"
    return f"{actor_type}: {actor_id}"


def actor_names(events: Iterable[AuditEvent]) -> dict[ActorKey, str]:
    """The registered names of the events' actors: one query per actor type that has a directory."""
    ids: dict[str, set[str]] = {}
    for event in events:
        if event.actor_type in _directories:
            ids.setdefault(event.actor_type, set()).add(event.actor_id)
    names: dict[ActorKey, str] = {}
    for actor_type, wanted in sorted(ids.items()):
        for actor_id, name in _directories[actor_type].names(wanted).items():
            names[(actor_type, actor_id)] = name
    return names


def actors_find(text: str, *, actor_type: str = "") -> list[ActorKey]:
    """The actors a typed username, registered name or recorded id means (of ``actor_type`` when given).

    ``user:7`` (as the log used to show actors) names one actor exactly. Otherwise every directory is asked
    (one query each); an id recorded for no one in a directory (a worker, a system command) is found in the
    log itself (one query). An empty list means nobody by that name: the caller says so rather than showing
    an empty result that reads like "nobody did anything".
    """
    text = text.strip()
    if not text:
        return []
    kind, sep, rest = text.partition(":")
    if sep and kind in ActorType.values and rest and (not actor_type or kind == actor_type):
        return [(kind, rest)]
    found: list[ActorKey] = []
    for kind, directory in sorted(_directories.items()):
        if actor_type and kind != actor_type:
            continue
        found.extend((kind, actor_id) for actor_id in directory.find(text))
    if found:
        return sorted(set(found))
    recorded = AuditEvent.objects.filter(actor_id=text)
    if actor_type:
        recorded = recorded.filter(actor_type=actor_type)
    return sorted(recorded.order_by().values_list("actor_type", "actor_id").distinct()[:20])
