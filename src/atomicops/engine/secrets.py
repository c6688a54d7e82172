"""Secret values: fetched or generated when first needed, known to the redactor, never stored.

The journal keeps ``${secrets.NAME}`` references, never values; everything that leaves the
process (journal events, messages, errors) passes through :class:`Redactor` as a last guard,
including text raised by libraries that echo their parameters.
"""

from __future__ import annotations

import json
import os
import re
import secrets as pysecrets
import string
import threading
from collections.abc import Callable, Mapping
from typing import Any

from atomicops.errors import ActionError
from atomicops.plan.model import SecretSpec

REDACTED = "***"
_ALPHABET = string.ascii_letters + string.digits

# Too short to redact without mangling ordinary text; such secrets are refused instead.
MIN_SECRET_LENGTH = 6


class Secrets:
    """The run's secret values, resolved lazily.

    ``fetch_aws(name, connection)`` reads a Secrets Manager secret; the engine passes one that
    goes through the plan's aws connection so the normal credential chain applies.
    """

    def __init__(
        self,
        specs: Mapping[str, SecretSpec],
        fetch_aws: Callable[[str, str | None], str] | None = None,
    ):
        self._specs = dict(specs)
        self._values: dict[str, str] = {}
        self._fetch_aws = fetch_aws
        self._lock = threading.Lock()
        self.redactor = Redactor()

    def __contains__(self, name: str) -> bool:
        return name in self._specs

    def known(self) -> dict[str, str]:
        """Name -> value of every secret resolved so far (what a sealed form can refer to)."""
        with self._lock:
            return dict(self._values)

    def value(self, name: str) -> str:
        with self._lock:
            if name not in self._values:
                value = self._produce(name, self._specs[name])
                if len(value) < MIN_SECRET_LENGTH:
                    raise ActionError(
                        "secrets", f"secret {name!r} is shorter than {MIN_SECRET_LENGTH} characters"
                    )
                self._values[name] = value
                self.redactor.add(value)
                _PROCESS.add(value)
            return self._values[name]

    def _produce(self, name: str, spec: SecretSpec) -> str:
        if spec.generate is not None:
            if spec.store is not None and self._fetch_aws is not None:
                # Written by an earlier run of the plan: the value everything already uses.
                # `name#key` reads one key of a JSON secret (`{"user": ..., "password": ...}`).
                secret_id, _, key = spec.store.partition("#")
                try:
                    stored = self._fetch_aws(secret_id, spec.connection)
                except ActionError as exc:
                    if not (exc.code or "").endswith("NotFoundException"):
                        raise
                else:
                    if not key:
                        return stored
                    try:
                        return str(json.loads(stored)[key])
                    except (ValueError, KeyError, TypeError):
                        raise ActionError("secrets", f"secret {name!r}: {secret_id} holds no JSON key {key!r}") from None
            # Letters and digits only: safe in URLs, DSNs and shell-less argv alike.
            return "".join(pysecrets.choice(_ALPHABET) for _ in range(spec.generate))
        if spec.env is not None:
            if spec.env not in os.environ:
                raise ActionError(
                    "secrets", f"secret {name!r} reads the environment variable {spec.env}, which is not set"
                )
            return os.environ[spec.env]
        assert spec.aws_secret is not None
        if self._fetch_aws is None:
            raise ActionError("secrets", f"secret {name!r} needs an aws connection to read it")
        return self._fetch_aws(spec.aws_secret, spec.connection)


class Redactor:
    """Replaces every known secret value in text and nested data."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        with self._lock:
            if value and value not in self._values:
                self._values.add(value)
                # Longest first, so a secret that contains another is replaced whole.
                alts = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in alts))

    def text(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(REDACTED, text)

    def data(self, value: Any) -> Any:
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(v) for v in value]
        return value


# Every secret value this process has resolved, whichever run resolved it. The CLI passes all
# it prints through it last: the API hands back reports and raises errors after the run (and
# its own redactor) is gone, and a value a library echoed may be in any of them.
_PROCESS = Redactor()


def process_redactor() -> Redactor:
    return _PROCESS
