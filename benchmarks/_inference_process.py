"""How the inference benchmark's phases run: each in a fresh process of its own (its memory and imports its
own), pinned to the cores asked for, with Django set up."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from typing import Any


def django_setup() -> None:
    import logging

    import django

    django.setup()
    # Presidio warns, at every registry it builds, that it skips its Spanish, Italian and Polish recognizers.
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)


def cores_pin(cpus: Sequence[int]) -> list[int]:
    """Pin this process to ``cpus`` (those that exist here); returns the cores it may use."""
    usable = sorted(set(cpus) & os.sched_getaffinity(0)) or sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, usable)
    return usable


def in_fresh_process(function: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run ``function`` in a fresh process (its memory and imports its own) and return its result."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        result: dict[str, Any] = pool.apply(function, args, kwargs)
    return result
