"""What ``${...}`` references mean during a run: one lookup function per place.

Three forms of a plan value:

* :meth:`Scope.journal_form`: secret references stay as text (``${secrets.db_password}``);
  for values that are never executed from the journal (secret specs, probe output specs).
* :meth:`Scope.exec_form`: everything resolved with the run's
  :class:`~atomicops.engine.secrets.Secrets`; what an action runs with, never journalled.
* :meth:`Scope.sealed_form`: what the journal keeps of an action or of outputs that will be
  executed or referenced again (the undo above all). A string that holds a secret becomes
  ``{"$sealed": ["postgres://u:", {"secret": "pw"}, "@db/app"]}``: the plan's own
  ``${secrets.X}`` references are resolved once, here, into these markers, and everything
  else (vars, outputs, the plan's ``$${...}`` escapes) is data that :func:`unsealed` never
  interprets again. Data cannot forge a marker: a data string that contains ``${secrets.``
  and a data mapping that has a ``$sealed`` or ``$data`` key are wrapped as ``{"$data": ...}``.
  A secret *value* found inside data (an output ``db-postgres-1`` with the secret
  ``postgres``) is sealed the same way, so the journal holds a reference to it rather than a
  masked string that would make the undo act on ``db-***-1``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

from atomicops.engine.secrets import REDACTED, Secrets
from atomicops.errors import ReferenceError_
from atomicops.plan import refs

SEALED = "$sealed"
DATA = "$data"
_MARKERS = frozenset({SEALED, DATA})
# A secret reference left as text: in journals written before sealed forms existed.
_LEGACY_REF = re.compile(r"\$\{\s*secrets\.([A-Za-z_][A-Za-z0-9_-]*)\s*\}")


@dataclass(frozen=True)
class Scope:
    env: str
    run_id: str
    vars: Mapping[str, Any] = field(default_factory=dict)
    ops_outputs: Callable[[str], Mapping[str, Any]] = lambda op: {}
    self_outputs: Mapping[str, Any] | None = None
    step_key: str | None = None
    step_run: str | None = None  # the run of the step's intent, when settling an earlier run's

    def with_self(self, outputs: Mapping[str, Any], step_key: str | None = None) -> Scope:
        return replace(self, self_outputs=dict(outputs), step_key=step_key)

    def lookup(self, secrets: Secrets | None, secret_text: Callable[[str], str] | None = None) -> refs.Lookup:
        """``secret_text`` stands in for a secret's value (the placeholder of a sealed form);
        outputs read from the journal may be sealed, and are opened with it too."""
        def opened(outputs: Mapping[str, Any]) -> Any:
            if secrets is None:
                return outputs
            return unsealed(outputs, secret_text or _value_of(secrets))

        def look(ref: refs.Ref) -> Any:
            ns, path = ref.namespace, ref.path
            if ns == "secrets":
                if secrets is None:
                    raise refs.Keep
                if path[0] not in secrets:
                    raise ReferenceError_(ref.text, "unknown secret")
                return (secret_text or _value_of(secrets))(path[0])
            if ns == "vars":
                return refs.dig(self.vars, path, ref)
            if ns == "ops":
                return refs.dig(opened(self.ops_outputs(path[0])), path[1:], ref)
            if ns == "self":
                if self.self_outputs is None:
                    raise ReferenceError_(ref.text, "no operation here")
                return refs.dig(opened(self.self_outputs), path, ref)
            if ns == "step":
                if self.step_key is None:
                    raise ReferenceError_(ref.text, "not inside a step")
                return self.step_key if path[0] == "key" else self.step_run or self.run_id
            if ns == "run":
                return self.run_id
            if ns == "env":
                return self.env
            raise ReferenceError_(ref.text, "unknown namespace")

        return look

    def journal_form(self, value: Any) -> Any:
        return refs.resolve(value, self.lookup(None))

    def exec_form(self, value: Any, secrets: Secrets) -> Any:
        return refs.resolve(value, self.lookup(secrets))

    def sealed_form(self, value: Any, secrets: Secrets) -> Any:
        """``value`` resolved for the journal: secrets as ``$sealed`` markers (module doc)."""
        # A placeholder no data can contain: it carries a fresh random nonce.
        nonce = uuid.uuid4().hex
        resolved = refs.resolve(value, self.lookup(secrets, lambda name: _Placeholder(f"~{nonce}.{name}~")))
        return sealed(resolved, secrets, nonce)


def _value_of(secrets: Secrets) -> Callable[[str], str]:
    return lambda name: refs.Sensitive(secrets.value(name))


class _Placeholder(refs.Sensitive):
    """Stands in for a secret while a sealed form is made; remembers a URI encoding."""

    def in_uri(self) -> str:
        return self[:-1] + ".uri~"


class _Mask(refs.Sensitive):
    def in_uri(self) -> str:
        return self


def sealed(value: Any, secrets: Secrets, nonce: str | None = None) -> Any:
    """``value`` (data, or resolved with placeholders of ``nonce``) in its journal form: every
    placeholder and every known secret value becomes a ``$sealed`` reference."""
    names = {v: n for n, v in secrets.known().items()}
    alts = [re.escape(f"~{nonce}.") + r"(?P<ref>[A-Za-z0-9_-]+)(?P<uri>\.uri)?~"] if nonce else []
    if names:  # longest first, so a secret that contains another is sealed whole
        alts.append("(?P<value>" + "|".join(re.escape(v) for v in sorted(names, key=len, reverse=True)) + ")")
    pattern = re.compile("|".join(alts)) if alts else None

    def text(s: str) -> Any:
        parts: list[Any] = []
        pos = 0
        for m in pattern.finditer(s) if pattern else ():
            if m.start() > pos:
                parts.append(s[pos:m.start()])
            ref = m.groupdict().get("ref")
            if ref is None:
                parts.append({"secret": names[m.group("value")]})
            else:
                parts.append({"secret": ref, "uri": True} if m.group("uri") else {"secret": ref})
            pos = m.end()
        if not parts:
            return {DATA: s} if "${secrets." in s else s
        if pos < len(s):
            parts.append(s[pos:])
        return {SEALED: parts}

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            return text(v)
        if isinstance(v, Mapping):
            inner = {k: walk(x) for k, x in v.items()}
            return {DATA: inner} if _MARKERS & set(inner) else inner
        if isinstance(v, (list, tuple)):
            return [walk(x) for x in v]
        return v

    return walk(value)


def unsealed(value: Any, secret_text: Callable[[str], str], *, legacy: bool = False) -> Any:
    """The inverse of :func:`sealed`: each ``$sealed`` string rebuilt with ``secret_text(name)``
    (the value, to execute; a mask, to show), ``$data`` unwrapped and never interpreted.

    ``legacy``: a journal written before sealed forms kept secret references as text; its bare
    ``${secrets.NAME}`` are resolved (a new journal never holds one outside ``$data``).
    """
    if isinstance(value, Mapping):
        if set(value) == {SEALED} and isinstance(value[SEALED], list):
            return "".join(p if isinstance(p, str) else _opened(p, secret_text) for p in value[SEALED])
        if set(value) == {DATA}:
            inner = value[DATA]
            if isinstance(inner, Mapping):
                return {k: unsealed(x, secret_text, legacy=legacy) for k, x in inner.items()}
            return inner
        return {k: unsealed(x, secret_text, legacy=legacy) for k, x in value.items()}
    if isinstance(value, list):
        return [unsealed(x, secret_text, legacy=legacy) for x in value]
    if legacy and isinstance(value, str) and "${" in value:
        return _LEGACY_REF.sub(lambda m: _legacy(m, secret_text), value)
    return value


def _opened(part: Mapping[str, Any], secret_text: Callable[[str], str]) -> str:
    text = secret_text(str(part["secret"]))
    if not part.get("uri"):
        return text
    return text.in_uri() if isinstance(text, refs.Sensitive) else quote(text, safe="")


def _legacy(ref: re.Match[str], secret_text: Callable[[str], str]) -> str:
    # As old journals were read: a name the plan does not declare stays text.
    try:
        return secret_text(ref.group(1))
    except ReferenceError_:
        return ref.group(0)


def secrets_only(action: Any, secrets: Secrets) -> Any:
    """A journalled action (an undo) ready to run: its sealed secrets opened, nothing else
    resolved. Secrets the plan no longer declares are refused by name."""
    def value(name: str) -> str:
        if name not in secrets:
            raise ReferenceError_(f"secrets.{name}", "unknown secret (the recorded plan no longer declares it)")
        return secrets.value(name)

    return unsealed(action, value, legacy=True)


def shown(value: Any) -> Any:
    """A journalled value as people see it: each sealed secret masked."""
    return unsealed(value, lambda name: _Mask(REDACTED))
