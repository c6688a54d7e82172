"""Which ROLLBACK command undoes which CREATE command, and what id the undo needs.

A create is paired with a rollback command of the same service whose verb undoes its verb
(create/delete, attach/detach, authorize/revoke, register/deregister...) on the same resource
type (the rest of the operation name: ``create_db_cluster`` and ``delete_db_cluster``), or
with the same call for verbs that set a value (``update_service`` with the old value). Among
several, the one that names the same thing wins: a parameter value they share (a name, a
placeholder), or an id the create's response carries under the name the delete's parameter
has (``VpcId`` in ``create_vpc``'s ``Vpc.VpcId``), which botocore's output shape tells.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_UNDO_VERBS = {
    "create": ("delete", "remove", "deregister", "terminate", "batch_delete"),
    "put": ("delete", "remove"),
    "register": ("deregister", "delete"),
    "attach": ("detach",),
    "authorize": ("revoke",),
    "associate": ("disassociate",),
    "allocate": ("release",),
    "run": ("terminate", "stop"),
    "add": ("remove", "delete"),
    "enable": ("disable",),
    "start": ("stop", "cancel"),
    "tag": ("untag",),
    "import": ("delete",),
    "subscribe": ("unsubscribe",),
    "publish": ("delete",),
    "allow": ("deny",),
}
_SETTERS = ("update", "modify", "set", "put", "change")
_READ = ("describe", "get", "list", "head", "search", "lookup", "batch_get", "filter", "query", "scan", "wait")


def verb_noun(operation: str) -> tuple[str, str]:
    for verb in ("batch_delete", "batch_get"):
        if operation.startswith(verb + "_"):
            return verb, operation[len(verb) + 1 :]
    verb, _, noun = operation.partition("_")
    return verb, noun


def is_read_only(operation: str) -> bool:
    return verb_noun(operation)[0] in _READ or operation in ("query", "scan")


def is_create(operation: str) -> bool:
    verb = verb_noun(operation)[0]
    return verb in _UNDO_VERBS or verb in _SETTERS


def _singular(noun: str) -> str:
    return noun[:-1] if noun.endswith("s") and not noun.endswith("ss") else noun


def nouns_match(a: str, b: str) -> int:
    """3 for the same resource type, 1 when one ends the other (``metric_alarm``/``alarms``)."""
    a, b = _singular(a), _singular(b)
    if a == b:
        return 3
    return 1 if a.endswith("_" + b) or b.endswith("_" + a) else 0


def undoes(create_op: str, rollback_op: str) -> int:
    """How well ``rollback_op`` matches as the undo of ``create_op`` (0: not at all)."""
    cv, cn = verb_noun(create_op)
    rv, rn = verb_noun(rollback_op)
    if cv in _SETTERS and create_op == rollback_op:
        return 3
    if rv not in _UNDO_VERBS.get(cv, ()):
        return 0
    return nouns_match(cn, rn)


def output_path(service: str, operation: str, member: str) -> str | None:
    """Where ``operation``'s response carries ``member`` (``Vpc.VpcId`` for ``VpcId``;
    ``Policy.Arn`` for ``PolicyArn``), from botocore's output shape; None if it does not."""
    from botocore import xform_name

    from atomicops.actions import aws_models

    model = aws_models.service_model(service)
    wanted = {member, member.lower()}
    for name in model.operation_names:
        if xform_name(name) == operation:
            shape = model.operation_model(name).output_shape
            break
    else:
        return None
    if shape is None:
        return None
    found = _search(shape, (), wanted, depth=3)
    return ".".join(found) if found else None


def _search(shape: Any, path: tuple[str, ...], wanted: set[str], depth: int) -> tuple[str, ...] | None:
    if depth == 0 or shape.type_name != "structure":
        return None
    parent = path[-1] if path else ""
    for name, member in shape.members.items():
        if name in wanted or (parent + name) in wanted or (parent + name).lower() in wanted:
            return (*path, name)
    for name, member in shape.members.items():
        deeper = _search(member, (*path, name), wanted, depth - 1)
        if deeper:
            return deeper
    return None


@dataclass(frozen=True)
class Candidate:
    index: int  # position among the operation's rollback commands
    service: str
    operation: str
    params: dict[str, Any]


def best_undo(service: str, operation: str, params: dict[str, Any], produced: Iterable[str],
              candidates: Iterable[Candidate], taken: set[int]) -> Candidate | None:
    """The rollback command that undoes this create, or None. ``produced``: the stand-ins
    (as text) of what the create's response gives (captured ``$VAR``s)."""
    best: tuple[int, int] | None = None
    chosen = None
    values = set(leaves(params))
    produced = set(produced)
    for cand in candidates:
        if cand.index in taken or cand.service != service:
            continue
        kind = undoes(operation, cand.operation)
        if not kind:
            continue
        shared = sum(1 for v in leaves(cand.params) if v in values or v in produced)
        score = (kind + 2 * shared, -cand.index)
        if best is None or score > best:
            best, chosen = score, cand
    return chosen


def leaves(value: Any) -> list[str]:
    """Every scalar in ``value``, as text."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in leaves(v)]
    if isinstance(value, list):
        return [s for v in value for s in leaves(v)]
    return [] if isinstance(value, bool) else [str(value)]
