"""Named crash points, for the tests that prove a kill at the worst moment loses nothing.

With ``ATOMICOPS_CRASH_AT=<point>[:<step key or op id>]`` in its environment the process
dies with ``os._exit`` (no cleanup, no flush, like SIGKILL) when it reaches that point. The
points: ``after_intent``, ``after_effect`` (the side effect happened, nothing journalled yet),
``after_result``, ``inside_undo`` (undo intent journalled, undo not run), ``after_undo``
(undo done, not journalled), ``between_operations``, ``before_checkpoint`` (an operation
carrying a checkpoint is journalled applied, its mark not yet written: resume writes it). Unset, each check is one dict lookup.
"""

from __future__ import annotations

import os

CRASH_ENV = "ATOMICOPS_CRASH_AT"
CRASH_EXIT_CODE = 137  # what a SIGKILLed process reports


def crashpoint(point: str, where: str = "") -> None:
    target = os.environ.get(CRASH_ENV)
    if not target:
        return
    name, _, at = target.partition(":")
    if name == point and (not at or at == where or where.endswith("/" + at)):
        os._exit(CRASH_EXIT_CODE)
