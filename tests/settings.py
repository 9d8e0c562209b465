"""Test settings: the real settings module with throwaway keys. DATABASE_URL and CELERY_BROKER_URL from the
environment still apply, so the same suite runs on SQLite and on PostgreSQL/Redis in CI."""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-any-deployment")
# A fixed test key ring (two keys, so rotation paths are exercised); never used outside tests.
os.environ.setdefault(
    "CLINICAL_AI_ENCRYPTION_KEYS",
    "test2:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=,test1:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=",
)
os.environ.setdefault("CLINICAL_AI_PSEUDONYM_KEY", "test-only-pseudonym-key-0123456789abcdef")
# X25519 test key pair for the pseudonym vault (test-only).
os.environ.setdefault("CLINICAL_AI_VAULT_PRIVATE_KEY", "OCbd5YtKD0ZyWq0xVLGtSd6M4q8vF0zGHjJ5mWhYpHM=")
os.environ.setdefault("CLINICAL_AI_VAULT_PUBLIC_KEY", "z9sqZResR7yG795nVz55smS6wts9UWjas4ZwVkHfyTA=")
os.environ.setdefault("CLINICAL_AI_VAR_DIR", tempfile.mkdtemp(prefix="clinical-ai-test-"))

from clinical_ai.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast in tests only
