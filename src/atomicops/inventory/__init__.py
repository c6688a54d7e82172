"""Inventories: comparable pictures of what exists in a target, taken before and after a run.

``rehearse`` proves a rollback left nothing behind by taking an inventory before apply and
after rollback and diffing them. :mod:`atomicops.inventory.aws` covers the AWS account; each
module exposes ``snapshot(...)`` and ``diff(before, after)``. Importing this package imports no
client library.
"""

from __future__ import annotations
