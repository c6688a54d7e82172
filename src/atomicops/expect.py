"""``expect``: what a verify check, a trigger or a probe requires of an action's result.

An expect is a mapping from a JMESPath expression (evaluated on the result) to either a plain
value, compared for equality, or an operator mapping::

    expect:
      "Vpcs[0].State": available                    # equality
      "MetricAlarms[0].StateValue": {not: ALARM}
      "DBClusters[0].Status": {in: [available, backing-up]}
      "rowcount": {gte: 1, lte: 10}                 # several operators: all must hold
      "json.version": {matches: '^2\\.'}
      "Reservations[0].Instances": {length: {gte: 1}}
      "json.error": {exists: false}

A mapping is an operator mapping only when *every* key is an operator name, so a result
that really is a mapping can still be compared with plain equality (or with ``{eq: ...}``
when its keys happen to look like operators).

Comparisons never raise on odd data: a number compared with a string, the length of a
number, a regex on nothing are mismatches with a reason, because the data comes from a live
system and a check that crashes is worse than one that fails clearly.
"""

from __future__ import annotations

import decimal
import difflib
import functools
import json
import numbers
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jmespath
import jmespath.exceptions
import jmespath.functions
import jmespath.parser

from atomicops import clipping
from atomicops.plan.refs import is_reference

__all__ = [
    "CANNOT_EVALUATE",
    "OPERATORS",
    "Mismatch",
    "check_expect_spec",
    "check_expression",
    "describe",
    "evaluate",
    "is_operator_mapping",
]

OPERATORS: frozenset[str] = frozenset(
    {"not", "in", "gte", "lte", "gt", "lt", "eq", "matches", "exists", "length"}
)

CANNOT_EVALUATE = "cannot evaluate"
"""Starts the reason when an expression failed on the data (a type error), not the data on it."""

_NUMERIC = {"gte": ">=", "lte": "<=", "gt": ">", "lt": "<"}

# Long results (a whole API response) would drown the message that explains the failure.
_MAX_SHOWN = 200


@dataclass(frozen=True)
class Mismatch:
    """One expectation not met: at ``path``, ``expected`` (the expect value) vs ``actual``."""

    path: str
    expected: Any
    actual: Any
    reason: str | None = None  # why a comparison could not hold, e.g. "not a number"

    def __str__(self) -> str:
        text = f"{self.path}: expected {describe(self.expected)}, got {_show(self.actual)}"
        return f"{text} ({self.reason})" if self.reason else text


def is_operator_mapping(value: Any) -> bool:
    """True when ``value`` is a non-empty mapping whose keys are all operator names."""
    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(isinstance(k, str) and k in OPERATORS for k in value)
    )


def evaluate(expect: Mapping[str, Any], data: Any) -> list[Mismatch]:
    """Every expectation in ``expect`` that ``data`` does not meet (empty when all hold)."""
    mismatches: list[Mismatch] = []
    for path, spec in expect.items():
        try:
            actual = _compile(path).search(data)
        except jmespath.exceptions.JMESPathError as e:
            # Syntax errors are caught by check_expect_spec at validation; a type error (e.g.
            # `length(@)` on a number) depends on the data and can only show up here.
            mismatches.append(Mismatch(path, spec, None, f"{CANNOT_EVALUATE}: {_oneline(e)}"))
            continue
        ok, reason = _holds(spec, actual)
        if not ok:
            mismatches.append(Mismatch(path, spec, actual, reason))
    return mismatches


def observe(expect: Mapping[str, Any], data: Any) -> dict[str, str]:
    """What ``data`` holds at each path of ``expect``, as text: the "observed" beside the
    "expected" of a check, whether it held or not."""
    seen: dict[str, str] = {}
    for path in expect:
        try:
            seen[path] = _show(_compile(path).search(data))
        except jmespath.exceptions.JMESPathError as e:
            seen[path] = f"{CANNOT_EVALUATE}: {_oneline(e)}"
    return seen


def check_expect_spec(expect: Any) -> list[tuple[str, str]]:
    """Static problems in an expect mapping, as ``(expression, message)`` pairs.

    Operands that are still unresolved references (``"${vars.min}"``) are not type-checked:
    they get their type when the plan's references are resolved.
    """
    if not isinstance(expect, Mapping):
        return [("", f"expect must be a mapping of JMESPath expression to value, got {expect!r}")]
    problems: list[tuple[str, str]] = []
    for path, spec in expect.items():
        if not isinstance(path, str):
            problems.append((str(path), "the key must be a JMESPath expression (a string)"))
            continue
        problem = check_expression(path)
        if problem:
            problems.append((path, problem))
        problems.extend((path, message) for message in _check_spec(spec))
    return problems


# jmespath parses `split(@)` happily and fails only when it evaluates it, i.e. in the middle
# of a run (a probe during resume): its function table is checked here, before anything runs.
_FUNCTIONS: Mapping[str, Any] = jmespath.functions.Functions().FUNCTION_TABLE


def check_expression(expression: str) -> str | None:
    """Why a JMESPath expression cannot be evaluated (syntax, an unknown function, a wrong
    number of arguments), or None when it can."""
    try:
        parsed = _compile(expression).parsed
    except jmespath.exceptions.JMESPathError as e:
        return f"invalid JMESPath expression: {_oneline(e)}"
    for node in _nodes(parsed):
        if node.get("type") != "function_expression":
            continue
        name, given = node.get("value"), len(node.get("children") or ())
        entry = _FUNCTIONS.get(name)
        if entry is None:
            hint = difflib.get_close_matches(str(name), _FUNCTIONS, n=1)
            more = f"did you mean {hint[0]}()?" if hint else f"functions: {', '.join(sorted(_FUNCTIONS))}"
            return f"unknown JMESPath function {name}() ({more})"
        signature = entry["signature"]
        variadic = bool(signature) and signature[-1].get("variadic", False)
        if given < len(signature) or (given > len(signature) and not variadic):
            wanted = f"at least {len(signature)}" if variadic else str(len(signature))
            return f"JMESPath function {name}() takes {wanted} argument(s), not {given}"
    return None


def _nodes(node: Any) -> Any:
    if isinstance(node, Mapping):
        yield node
        for child in node.get("children") or ():
            yield from _nodes(child)


# -- evaluation ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _compile(expression: str) -> jmespath.parser.ParsedResult:
    # Triggers re-evaluate the same expressions every poll; parse each once.
    return jmespath.compile(expression)


def _holds(spec: Any, actual: Any) -> tuple[bool, str | None]:
    """Whether ``actual`` meets ``spec``; when not, maybe a reason beyond "different"."""
    if not is_operator_mapping(spec):
        return _equal(spec, actual), None
    for name, operand in spec.items():
        ok, reason = _OPERATIONS[name](operand, actual)
        if not ok:
            return False, reason
    return True, None


def _op_not(operand: Any, actual: Any) -> tuple[bool, str | None]:
    # The operand may itself be an operator mapping: {not: {in: [a, b]}}.
    ok, _ = _holds(operand, actual)
    return not ok, None


def _op_eq(operand: Any, actual: Any) -> tuple[bool, str | None]:
    return _equal(operand, actual), None


def _op_in(operand: Any, actual: Any) -> tuple[bool, str | None]:
    if not isinstance(operand, (list, tuple)):
        return False, f"`in` needs a list, got {_show(operand)}"
    return any(_equal(choice, actual) for choice in operand), None


_Operation = Callable[[Any, Any], "tuple[bool, str | None]"]


def _numeric(name: str) -> _Operation:
    compare: Callable[[Any, Any], Any] = {
        "gte": operator.ge,
        "lte": operator.le,
        "gt": operator.gt,
        "lt": operator.lt,
    }[name]

    def op(operand: Any, actual: Any) -> tuple[bool, str | None]:
        if not _is_number(operand):
            return False, f"`{name}` needs a number, got {_show(operand)}"
        if not _is_number(actual):
            return False, "not a number"
        a, b = _comparable(actual, operand)
        try:
            return bool(compare(a, b)), None
        except ArithmeticError:  # Decimal NaN refuses to be ordered
            return False, "not comparable"

    return op


def _op_matches(operand: Any, actual: Any) -> tuple[bool, str | None]:
    if actual is None:
        return False, None  # nothing there: not even `.*` should pass
    try:
        pattern = re.compile(str(operand))
    except re.error as e:
        return False, f"invalid regular expression: {e}"
    return pattern.search(_text(actual)) is not None, None


def _op_exists(operand: Any, actual: Any) -> tuple[bool, str | None]:
    # JMESPath gives None both for a missing key and for an explicit null; both are "absent".
    return (actual is not None) == bool(operand), None


def _op_length(operand: Any, actual: Any) -> tuple[bool, str | None]:
    if not isinstance(actual, (str, list, tuple, Mapping)):
        return False, "has no length"
    ok, reason = _holds(operand, len(actual))
    return ok, reason or (None if ok else f"its length is {len(actual)}")


_OPERATIONS: dict[str, _Operation] = {
    "not": _op_not,
    "eq": _op_eq,
    "in": _op_in,
    "matches": _op_matches,
    "exists": _op_exists,
    "length": _op_length,
    **{name: _numeric(name) for name in _NUMERIC},
}
assert set(_OPERATIONS) == OPERATORS


def _is_number(value: Any) -> bool:
    # bool is an int in Python but never a number in a plan: `true` is not 1. Decimal is
    # not a numbers.Real, but it is what boto3 gives for DynamoDB and psycopg for NUMERIC.
    return isinstance(value, (numbers.Real, decimal.Decimal)) and not isinstance(value, bool)


def _comparable(a: Any, b: Any) -> tuple[Any, Any]:
    """Make a Decimal and a float compare by value as written: Decimal("1.1") vs 1.1."""
    if isinstance(a, decimal.Decimal) and isinstance(b, float):
        return a, decimal.Decimal(repr(b))
    if isinstance(b, decimal.Decimal) and isinstance(a, float):
        return decimal.Decimal(repr(a)), b
    return a, b


def _equal(expected: Any, actual: Any) -> bool:
    """Equality as a plan author means it: 1 == 1.0, "1" != 1, true != 1, recursively."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if _is_number(expected) or _is_number(actual):
        if not (_is_number(expected) and _is_number(actual)):
            return False
        a, b = _comparable(expected, actual)
        return bool(a == b)
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        return expected.keys() == actual.keys() and all(
            _equal(v, actual[k]) for k, v in expected.items()
        )
    if isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple)):
        return len(expected) == len(actual) and all(_equal(e, a) for e, a in zip(expected, actual))
    if isinstance(expected, (Mapping, list, tuple)) or isinstance(actual, (Mapping, list, tuple)):
        return False
    return bool(expected == actual)


def _text(value: Any) -> str:
    # Booleans as the plan spells them (`true`), so `{matches: ^true$}` means what it says.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- static checks ------------------------------------------------------------------------


def _check_spec(spec: Any) -> list[str]:
    if not isinstance(spec, Mapping) or not spec:
        return []
    keys = [k for k in spec]
    operators = [k for k in keys if isinstance(k, str) and k in OPERATORS]
    others = [k for k in keys if not (isinstance(k, str) and k in OPERATORS)]
    if operators and others:
        return [
            (
                f"mixes operators ({', '.join(operators)}) with other keys "
                f"({', '.join(map(str, others))}); to compare with a mapping use {{eq: ...}}"
            )
        ]
    if not operators:
        # A mapping of ordinary names is a value to compare with. A key that cannot be a
        # name (`>=`, `$gte`), or that names a comparison (`atleast`, `lenght`), was meant as
        # an operator: compared as a literal it would fail (or pass) for the wrong reason.
        return [
            f"unknown operator {k!r}{_meant(k)}; operators are {', '.join(sorted(OPERATORS))} "
            "(to compare with a mapping, write {eq: {...}})"
            for k in others
            if not (isinstance(k, str) and k[:1].isalpha()) or _meant(k)
        ]
    problems: list[str] = []
    for name in operators:
        problems.extend(f"{name}: {m}" for m in _check_operand(name, spec[name]))
    return problems


# Words plan authors reach for when they mean one of OPERATORS.
_ALIASES = {
    "atleast": "gte", "at_least": "gte", "ge": "gte", "greater_or_equal": "gte",
    "atmost": "lte", "at_most": "lte", "le": "lte", "less_or_equal": "lte",
    "greater_than": "gt", "less_than": "lt",
    "ne": "not", "neq": "not", "not_eq": "not", "not_equal": "not", "equals": "eq", "equal": "eq",
    "one_of": "in", "any_of": "in", "not_in": "not: {in: [...]}", "nin": "not: {in: [...]}",
    "regex": "matches", "match": "matches", "len": "length", "exist": "exists",
}  # fmt: skip


def _meant(key: Any) -> str:
    """`` (did you mean gte?)`` when ``key`` reads as a misspelt or borrowed operator name."""
    if not isinstance(key, str):
        return ""
    word = key.lower()
    meant = _ALIASES.get(word) or next(iter(difflib.get_close_matches(word, OPERATORS, n=1, cutoff=0.75)), None)
    return f" (did you mean {meant}?)" if meant and word not in OPERATORS else ""


def _check_operand(name: str, operand: Any) -> list[str]:
    if is_reference(operand):
        return []
    if name == "not":
        return _check_spec(operand)
    if name == "in":
        if not isinstance(operand, (list, tuple)):
            return [f"needs a list of values, got {_show(operand)}"]
        return []
    if name in _NUMERIC:
        if not _is_number(operand):
            return [f"needs a number, got {_show(operand)}"]
        return []
    if name == "matches":
        if not isinstance(operand, str):
            return [f"needs a regular expression (a string), got {_show(operand)}"]
        try:
            re.compile(operand)
        except re.error as e:
            return [f"invalid regular expression: {e}"]
        return []
    if name == "exists":
        if not isinstance(operand, bool):
            return [f"needs true or false, got {_show(operand)}"]
        return []
    if name == "length":
        if is_operator_mapping(operand):
            return _check_spec(operand)
        if isinstance(operand, Mapping):
            return _check_spec(operand) or [
                f"needs a number or a comparison such as {{gte: 1}}, got {_show(operand)}"
            ]
        if not (isinstance(operand, int) and not isinstance(operand, bool) and operand >= 0):
            return [f"needs a non-negative integer or a comparison, got {_show(operand)}"]
        return []
    return []  # eq: any value


# -- messages -----------------------------------------------------------------------------


def describe(spec: Any) -> str:
    """``spec`` as words: ``available``, ``not ALARM``, ``>= 1 and <= 10``, ``length >= 1``."""
    if not is_operator_mapping(spec):
        return _show(spec)
    parts = []
    for name, operand in spec.items():
        if name == "not":
            parts.append(f"not {describe(operand)}")
        elif name == "eq":
            parts.append(_show(operand))
        elif name == "in":
            parts.append(f"one of {_show(operand)}")
        elif name in _NUMERIC:
            parts.append(f"{_NUMERIC[name]} {_show(operand)}")
        elif name == "matches":
            parts.append(f"a match for /{operand}/")
        elif name == "exists":
            parts.append("a value" if operand else "no value")
        elif name == "length":
            inner = describe(operand)
            parts.append(f"length {inner if is_operator_mapping(operand) else '== ' + inner}")
    return " and ".join(parts)


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, sort_keys=True, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    return clipping.head(text, _MAX_SHOWN)  # between words: a secret is shown whole, then masked


def _oneline(error: Exception) -> str:
    text = " ".join(str(error).split())
    # jmespath prefixes its parse errors with this; our messages already say it.
    return text.removeprefix("Invalid jmespath expression: ")
