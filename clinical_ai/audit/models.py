from __future__ import annotations

from django.db import models

from clinical_ai.audit.chain import GENESIS_HASH


class ActorType(models.TextChoices):
    USER = "user", "User"
    EHR_CLIENT = "ehr_client", "EHR client"
    WORKER = "worker", "Worker"
    SYSTEM = "system", "System"
    ANONYMOUS = "anonymous", "Anonymous"


class Outcome(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"


class AuditEvent(models.Model):
    """One audited action. Append-only (database triggers refuse UPDATE, and DELETE except of the rows a
    retention purge has opened with ``AuditPurgePermit``) and hash-chained: ``hash`` covers every field
    below and ``prev_hash``. Never holds raw PHI: patients appear by pseudonym, objects by id."""

    seq = models.PositiveBigIntegerField(unique=True)
    occurred_at = models.DateTimeField(db_index=True)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(max_length=128)
    action = models.CharField(max_length=64, db_index=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True, db_index=True)
    organization = models.CharField(max_length=64, blank=True)
    patient_pseudonym = models.CharField(max_length=128, blank=True, db_index=True)
    request_id = models.CharField(max_length=64, blank=True, db_index=True)
    detail = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["seq"]
        indexes = [
            # Newest-first searches by organization (FHIR AuditEvent search: a client sees its own) and by
            # actor (the console), without walking the whole log.
            models.Index(fields=["organization", "seq"], name="audit_event_org_seq"),
            models.Index(fields=["actor_id", "seq"], name="audit_event_actor_seq"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.outcome} by {self.actor_type}:{self.actor_id}"


class AuditChainHead(models.Model):
    """A single row holding both ends of the chain. Writers lock it, which serializes appends (and purges)
    on every database. The end (``last_seq``, ``last_hash``) lets verification notice rows deleted from the
    end; the start (``first_seq``, ``first_prev_hash``) is where the kept chain begins after a retention
    purge, and the hash its first row must link to. Only ``audit_purge`` moves the start, and it records
    an ``audit.purge`` event that verification requires to vouch for it."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_seq = models.PositiveBigIntegerField(default=0)
    last_hash = models.CharField(max_length=64)
    first_seq = models.PositiveBigIntegerField(default=1)
    first_prev_hash = models.CharField(max_length=64, default=GENESIS_HASH)

    def __str__(self) -> str:
        return f"audit head #{self.last_seq}"


class AuditPurgePermit(models.Model):
    """The one switch the append-only triggers honour: rows with ``seq`` below ``below_seq`` may be deleted.

    It is 0 (closed) except inside ``audit_purge``'s transaction, which opens it, deletes and closes it
    again before committing, so no other transaction ever sees it open. Not managed by Django (migration
    0003 creates the table and its single row): ``manage.py flush`` and test-database flushes leave it as
    it is."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    below_seq = models.PositiveBigIntegerField(default=0)

    class Meta:
        managed = False
        db_table = "audit_purgepermit"

    def __str__(self) -> str:
        return f"audit purge permit below #{self.below_seq}"
