"""Secret values: fetched or generated when first needed, known to the redactor, never stored.

The journal keeps ``${secrets.NAME}`` references, never values; everything that leaves the
process (journal events, messages, errors) passes through :class:`Redactor` as a last guard,
including text raised by libraries that echo their parameters.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets as pysecrets
import shlex
import string
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

from atomicops.errors import ActionError

if TYPE_CHECKING:  # annotations only: importing the model would load pydantic for `status`
    from atomicops.plan.model import SecretSpec

REDACTED = "***"
_ALPHABET = string.ascii_letters + string.digits

# A secret is masked wherever its value appears in text. A short or common value also
# appears in ordinary text (`db-postgres-1`, "password"), which masking would garble and which
# would hint at the value; such secrets are refused instead, at validate where the value is
# known then (an environment variable) and when the value is first read.
MIN_SECRET_LENGTH = 8
COMMON_VALUES = frozenset({
    "password", "passw0rd", "postgres", "postgresql", "changeme", "changeit", "secret", "secrets",
    "default", "admin", "administrator", "root", "test", "testing", "guest", "user", "username",
    "mysql", "redis", "example", "letmein", "qwerty", "qwertyuiop", "12345678", "123456789",
    "1234567890", "iloveyou", "welcome", "sunshine", "password1", "password123", "localhost",
    "database", "mistersmith",
})


def refusal(name: str, value: str) -> str | None:
    """Why ``value`` cannot be secret ``name`` (too short or too common to mask), or None."""
    if len(value) < MIN_SECRET_LENGTH:
        return f"secret {name!r} is shorter than {MIN_SECRET_LENGTH} characters: too short to mask safely"
    if value.lower() in COMMON_VALUES:
        return f"secret {name!r} is too common a word to mask safely (it appears in ordinary names and text); use a stronger value"
    return None


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
        # One lock per secret, held while it is fetched or generated: the value is produced
        # once, and a fetch that needs another secret (its connection's) or waits on AWS
        # holds back only the steps that need this same secret.
        self._producing: dict[str, threading.Lock] = {}
        self.redactor = Redactor()

    def __contains__(self, name: str) -> bool:
        return name in self._specs

    def known(self) -> dict[str, str]:
        """Name -> value of every secret resolved so far (what a sealed form can refer to)."""
        with self._lock:
            return dict(self._values)

    def value(self, name: str) -> str:
        with self._lock:
            if name in self._values:
                return self._values[name]
            producing = self._producing.setdefault(name, threading.Lock())
        with producing:
            with self._lock:
                if name in self._values:  # produced by another step while this one waited
                    return self._values[name]
            value = self._produce(name, self._specs[name])
            refused = refusal(name, value)
            if refused:
                raise ActionError("secrets", refused)
            with self._lock:
                self._values[name] = value
                self.redactor.add(value)
                _PROCESS.add(value)
            return value

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


def encodings(value: str) -> set[str]:
    """The forms a value commonly takes in text: as is, inside a JSON or Python string,
    backslash-escaped, URL-encoded (a DSN, a query), shell-quoted, base64."""
    if not value:
        return set()
    forms = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        value.replace("\\", "\\\\"),
        repr(value)[1:-1],
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        shlex.quote(value),
        base64.b64encode(value.encode()).decode(),
    }
    return {f for f in forms if f}


class Redactor:
    """Replaces every known secret value in text and nested data."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        with self._lock:
            forms = encodings(value) - self._values
            if forms:
                self._values |= forms
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
