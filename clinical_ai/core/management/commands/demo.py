"""``manage.py demo``: the whole service on one machine with no server.

Migrates the SQLite database, creates demo users and an EHR client (with a fresh key pair under var/),
starts a real Celery worker (with the beat scheduler for the intake sweep) and the web server, sends the
sample bundle through the real HTTP path as the EHR would, and keeps both processes running until Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinical_ai.core.http import HttpFailure, http_request, url_host
from clinical_ai.demo import DEMO_PASSWORDS, demo_environment_ensure
from integrations.fhir.client import ClientError, fetch_access_token, post_fhir


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Run the demo: web server and worker on SQLite and the filesystem broker. Ctrl-C stops both."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000")
        parser.add_argument("--no-sample", action="store_true", help="do not send the sample bundle")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("the demo runs with DEBUG=1 (development keys under var/); use `make demo`")
        # Ctrl-C (and a plain `kill`) stop the demo cleanly even where the shell started it with SIGINT ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        call_command("migrate", interactive=False, verbosity=0)
        demo = demo_environment_ensure()
        base_url = f"http://{options['addr']}"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "DJANGO_SETTINGS_MODULE": "clinical_ai.settings"}
        var_dir = Path(settings.VAR_DIR)
        worker = subprocess.Popen(  # noqa: S603 (fixed argv, our own interpreter)
            [
                sys.executable, "-m", "celery", "-A", "clinical_ai", "worker", "--beat",
                "--schedule", str(var_dir / "celerybeat-schedule"),
                "-Q", "deid,inference,bulk", "--concurrency", "2", "--loglevel", "INFO",
                "--hostname", "demo-worker@%h",
            ],
            env=env,
        )  # fmt: skip
        web = subprocess.Popen(  # noqa: S603
            [sys.executable, "manage.py", "runserver", "--noreload", options["addr"]],
            env=env,
            cwd=settings.BASE_DIR,
        )
        processes = [web, worker]
        try:
            self._wait_until_up(base_url, processes)
            if not options["no_sample"]:
                self._send_sample(base_url, demo)
            self._banner(base_url, demo)
            self.stdout.flush()  # shown at once even when the output is piped to a file
            while all(p.poll() is None for p in processes):
                time.sleep(0.5)
            raise CommandError("a demo process exited; see its output above")
        except KeyboardInterrupt:
            self.stdout.write("\nstopping the web server and the worker ...")
        finally:
            # Ctrl-C reaches the children too (same process group); a second one must not abandon them.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()

    def _wait_until_up(self, base_url: str, processes: list[subprocess.Popen[bytes]]) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in processes):
                raise CommandError("a demo process failed to start; see its output above")
            try:
                reply = http_request(
                    "GET",
                    f"{base_url}/healthz",
                    allowed_hosts={url_host(base_url)},
                    allow_plain_http=True,  # --addr may name this machine by an address other than loopback
                    timeout_seconds=2,
                    max_response_bytes=64 * 1024,
                )
                if reply.ok:
                    return
            except HttpFailure:
                pass
            time.sleep(0.5)
        raise CommandError(f"the web server did not answer on {base_url} within 60 s")

    def _send_sample(self, base_url: str, demo: Any) -> None:
        sample = Path(settings.BASE_DIR) / "fixtures" / "sample-bundle.json"
        try:
            token = fetch_access_token(
                token_url=f"{base_url}/auth/token",
                client_id=demo.client_id,
                private_key_pem=demo.private_key_path.read_bytes(),
                kid=demo.kid,
                scope="system/*.write",
            )
            answer = post_fhir(url=f"{base_url}/fhir", access_token=token, body=sample.read_bytes())
        except (ClientError, OSError) as exc:
            self.stderr.write(f"sending the sample bundle failed: {exc}")
            return
        self.stdout.write(f"sample bundle sent as the EHR client: HTTP {answer.status}")

    def _banner(self, base_url: str, demo: Any) -> None:
        logins = "\n".join(
            f"    {user:10s} password: {password}" for user, password in DEMO_PASSWORDS.items()
        )
        self.stdout.write(
            f"""
clinical-ai demo is running at {base_url}/
  review queue (sign in as clinician):          {base_url}/review/
  models, switches and monitoring (admin):      {base_url}/models/
  audit console (sign in as auditor or admin):  {base_url}/audit/
  Django admin (ingest jobs, organizations):    {base_url}/admin/
  FHIR base:                                    {base_url}/fhir   (CapabilityStatement: /fhir/metadata)
  demo logins:
{logins}
  EHR client id: {demo.client_id}   key: {demo.private_key_path}   kid: {demo.kid}
  send a bundle as the EHR:
    DEBUG=1 .venv/bin/python manage.py fhir_send fixtures/sample-bundle.json --base-url {base_url} \\
        --client-id {demo.client_id} --private-key {demo.private_key_path} --kid {demo.kid}
Press Ctrl-C to stop the web server and the worker.
"""
        )
