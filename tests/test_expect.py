"""The expect operators: examples for each, static checks, and properties over random data."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atomicops.expect import (
    OPERATORS,
    Mismatch,
    check_expect_spec,
    describe,
    evaluate,
    is_operator_mapping,
)


def holds(spec: Any, value: Any) -> bool:
    """Whether ``value`` (at key ``v``) meets ``spec``."""
    return evaluate({"v": spec}, {"v": value}) == []


def test_operator_names() -> None:
    assert OPERATORS == {"not", "in", "gte", "lte", "gt", "lt", "eq", "matches", "exists", "length"}


# -- equality -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        ("available", "available", True),
        ("available", "pending", False),
        (1, 1, True),
        (1, 1.0, True),
        (1.0, 1, True),
        (1, "1", False),
        ("1", 1, False),
        (True, True, True),
        (True, 1, False),
        (1, True, False),
        (False, 0, False),
        (0, None, False),
        (None, None, True),
        ("", None, False),
        ([1, 2], [1, 2], True),
        ([1, 2], [1.0, 2.0], True),
        ([1, 2], [2, 1], False),
        ([1, True], [1, 1], False),
        ([], [], True),
        ({"a": 1}, {"a": 1.0}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ({"a": [1, {"b": "x"}]}, {"a": [1, {"b": "x"}]}, True),
        ({}, {}, True),
        ({}, [], False),
        ("x", ["x"], False),
        (Decimal("1.5"), 1.5, True),
        (1.1, Decimal("1.1"), True),
        (3, Decimal(3), True),
        (Decimal(2), "2", False),
    ],
)
def test_plain_equality(expected: Any, actual: Any, ok: bool) -> None:
    assert holds(expected, actual) is ok
    assert holds({"eq": expected}, actual) is ok


def test_a_mapping_of_ordinary_keys_is_a_value() -> None:
    tags = {"Key": "atomicops:env", "Value": "prod"}
    assert holds(tags, dict(tags))
    assert not holds(tags, {"Key": "atomicops:env", "Value": "dev"})


def test_eq_compares_with_a_mapping_that_looks_like_operators() -> None:
    assert holds({"eq": {"in": 1, "not": 2}}, {"in": 1, "not": 2})
    assert not holds({"eq": {"in": 1}}, 1)


# -- operators ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "actual", "ok"),
    [
        ({"not": "ALARM"}, "OK", True),
        ({"not": "ALARM"}, "ALARM", False),
        ({"not": "ALARM"}, None, True),
        ({"not": 1}, 1.0, False),
        ({"not": 1}, "1", True),
        ({"not": {"in": ["a", "b"]}}, "c", True),
        ({"not": {"in": ["a", "b"]}}, "a", False),
        ({"not": {"gte": 5}}, 3, True),
        ({"not": {"gte": 5}}, 7, False),
        ({"not": {"exists": True}}, None, True),
        ({"not": {"Key": "x"}}, {"Key": "y"}, True),
        ({"in": ["available", "backing-up"]}, "available", True),
        ({"in": ["available", "backing-up"]}, "creating", False),
        ({"in": [1, 2]}, 2.0, True),
        ({"in": [1, 2]}, "1", False),
        ({"in": []}, "x", False),
        ({"in": [None]}, None, True),
        ({"in": [[1], [2]]}, [2], True),
        ({"in": "abc"}, "a", False),  # `in` takes a list, not a string
        ({"gte": 1}, 1, True),
        ({"gte": 1}, 0, False),
        ({"gte": 1}, 1.5, True),
        ({"gte": 1.5}, 1, False),
        ({"gte": 0}, "5", False),
        ({"gte": 0}, None, False),
        ({"gte": 0}, True, False),
        ({"gte": 0}, [1], False),
        ({"gte": "0"}, 5, False),
        ({"gte": 1}, Decimal(1), True),
        ({"gte": 1.1}, Decimal("1.1"), True),
        ({"lte": 10}, 10, True),
        ({"lte": 10}, 10.5, False),
        ({"lte": 10}, -3, True),
        ({"gt": 0}, 0, False),
        ({"gt": 0}, 0.001, True),
        ({"lt": 0}, -1, True),
        ({"lt": 0}, 0, False),
        ({"lt": 0}, "a", False),
        ({"gte": 1, "lte": 10}, 5, True),
        ({"gte": 1, "lte": 10}, 11, False),
        ({"gte": 1, "lte": 10}, 0, False),
        ({"gt": 1, "lt": 1}, 1, False),
        ({"gte": 1, "not": 3}, 3, False),
        ({"matches": "^2\\."}, "2.4.1", True),
        ({"matches": "^2\\."}, "12.4", False),
        ({"matches": "healthy"}, "status: healthy!", True),  # search, not fullmatch
        ({"matches": "^\\d+$"}, 42, True),  # matched against str(actual)
        ({"matches": "^true$"}, True, True),  # booleans as plans spell them
        ({"matches": ".*"}, None, False),  # nothing there matches nothing
        ({"matches": ".*"}, "", True),
        ({"matches": "("}, "(", False),  # a broken regex is a mismatch, not a crash
        ({"exists": True}, "x", True),
        ({"exists": True}, "", True),
        ({"exists": True}, 0, True),
        ({"exists": True}, False, True),
        ({"exists": True}, [], True),
        ({"exists": True}, None, False),
        ({"exists": False}, None, True),
        ({"exists": False}, "x", False),
        ({"length": 2}, [1, 2], True),
        ({"length": 2}, [1], False),
        ({"length": 0}, [], True),
        ({"length": 3}, "abc", True),
        ({"length": 1}, {"a": 1}, True),
        ({"length": 2}, 12, False),
        ({"length": 0}, None, False),
        ({"length": {"gte": 1}}, [1, 2, 3], True),
        ({"length": {"gte": 1}}, [], False),
        ({"length": {"in": [1, 3]}}, [0, 0, 0], True),
        ({"length": {"not": 0}}, [1], True),
        ({"length": {"gte": 1, "lte": 2}}, [1, 2, 3], False),
        ({"exists": True, "length": {"gte": 1}}, ["a"], True),
    ],
)
def test_operators(spec: dict[str, Any], actual: Any, ok: bool) -> None:
    assert holds(spec, actual) is ok


def test_jmespath_paths_and_projections() -> None:
    data = {
        "Vpcs": [{"State": "available", "Tags": [{"Key": "Name", "Value": "main"}]}],
        "Subnets": [{"AvailabilityZone": "us-east-1a"}, {"AvailabilityZone": "us-east-1b"}],
        "json": {"status": "healthy"},
    }
    assert (
        evaluate(
            {
                "Vpcs[0].State": "available",
                "Vpcs[0].Tags[?Key=='Name'].Value | [0]": "main",
                "Subnets[*].AvailabilityZone": {"length": 2},
                "length(Subnets)": {"gte": 2},
                "json.status": "healthy",
                "json.missing": {"exists": False},
                "Vpcs[5]": {"exists": False},
            },
            data,
        )
        == []
    )


def test_several_expectations_each_reported() -> None:
    mismatches = evaluate(
        {"a": 1, "b": {"gte": 10}, "c": "ok"},
        {"a": 1, "b": 3, "c": "bad"},
    )
    assert [m.path for m in mismatches] == ["b", "c"]
    assert mismatches[0] == Mismatch("b", {"gte": 10}, 3, None)


def test_an_expression_that_fails_on_the_data_is_a_mismatch() -> None:
    # length() of a number is a JMESPath type error: it depends on the data, so no crash.
    [m] = evaluate({"length(n)": 1}, {"n": 5})
    assert m.actual is None and m.reason and "cannot evaluate" in m.reason


def test_results_with_python_objects() -> None:
    # boto3 gives datetimes; they compare with plain equality and match as str().
    when = dt.datetime(2024, 1, 2, 3, 4, 5)
    assert holds(when, when)
    assert holds({"matches": "^2024-01-02"}, when)
    assert holds({"gte": 0}, Decimal("0.5"))


# -- messages -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "data", "message"),
    [
        (
            {"Vpcs[0].State": "available"},
            {"Vpcs": [{"State": "pending"}]},
            "Vpcs[0].State: expected available, got pending",
        ),
        (
            {"MetricAlarms[0].StateValue": {"not": "ALARM"}},
            {"MetricAlarms": [{"StateValue": "ALARM"}]},
            "MetricAlarms[0].StateValue: expected not ALARM, got ALARM",
        ),
        ({"s": {"in": ["a", "b"]}}, {"s": "c"}, 's: expected one of ["a", "b"], got c'),
        ({"n": {"gte": 1, "lte": 10}}, {"n": 11}, "n: expected >= 1 and <= 10, got 11"),
        ({"n": {"gte": 1}}, {"n": "x"}, "n: expected >= 1, got x (not a number)"),
        ({"n": {"gt": 1}}, {}, "n: expected > 1, got nothing (not a number)"),
        ({"v": {"matches": "^2"}}, {"v": "1.0"}, "v: expected a match for /^2/, got 1.0"),
        ({"e": {"exists": True}}, {}, "e: expected a value, got nothing"),
        ({"e": {"exists": False}}, {"e": 1}, "e: expected no value, got 1"),
        ({"l": {"length": 2}}, {"l": [1]}, "l: expected length == 2, got [1] (its length is 1)"),
        (
            {"l": {"length": {"gte": 1}}},
            {"l": []},
            "l: expected length >= 1, got [] (its length is 0)",
        ),
        ({"l": {"length": 1}}, {"l": 7}, "l: expected length == 1, got 7 (has no length)"),
        ({"m": {"a": 1}}, {"m": {"a": 2}}, 'm: expected {"a": 1}, got {"a": 2}'),
    ],
)
def test_mismatch_messages(spec: dict[str, Any], data: Any, message: str) -> None:
    [m] = evaluate(spec, data)
    assert str(m) == message


def test_long_actual_values_are_shortened() -> None:
    [m] = evaluate({"big": "x"}, {"big": list(range(1000))})
    assert len(str(m)) < 300 and str(m).endswith("...")


def test_describe() -> None:
    assert describe("available") == "available"
    assert describe({"not": {"in": [1]}}) == "not one of [1]"
    assert describe({"length": {"gte": 1}}) == "length >= 1"


def test_is_operator_mapping() -> None:
    assert is_operator_mapping({"gte": 1})
    assert is_operator_mapping({"gte": 1, "lte": 2})
    assert not is_operator_mapping({"gte": 1, "Name": "x"})
    assert not is_operator_mapping({"Name": "x"})
    assert not is_operator_mapping({})
    assert not is_operator_mapping("gte")


# -- static checks ------------------------------------------------------------------------


def test_a_valid_spec_has_no_problems() -> None:
    assert (
        check_expect_spec(
            {
                "Vpcs[0].State": "available",
                "MetricAlarms[0].StateValue": {"not": "ALARM"},
                "x": {"in": [1, 2]},
                "n": {"gte": 1, "lte": 2.5, "gt": 0, "lt": 3},
                "v": {"matches": "^2\\."},
                "e": {"exists": False},
                "l": {"length": {"gte": 1}},
                "l2": {"length": 0},
                "t": {"Key": "Name", "Value": "main"},  # a plain mapping value
                "q": {"eq": {"in": 1}},
                "r": {"gte": "${vars.min_tasks}"},  # resolved later
                "length(Subnets)": 2,
                "Tags[?Key=='Name'].Value | [0]": "main",
            }
        )
        == []
    )


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"Vpcs[0": 1}, "invalid JMESPath"),
        ({"a..b": 1}, "invalid JMESPath"),
        ({"x": {"gte": 1, "Name": "x"}}, "mixes operators (gte) with other keys (Name)"),
        ({"x": {">=": 1}}, "unknown operator '>='"),
        ({"x": {"$gte": 1}}, "unknown operator '$gte'"),
        ({"x": {"gte": "ten"}}, "gte: needs a number"),
        ({"x": {"lt": True}}, "lt: needs a number"),
        ({"x": {"in": "abc"}}, "in: needs a list"),
        ({"x": {"matches": "("}}, "matches: invalid regular expression"),
        ({"x": {"matches": 3}}, "matches: needs a regular expression"),
        ({"x": {"exists": "yes"}}, "exists: needs true or false"),
        ({"x": {"length": -1}}, "length: needs a non-negative integer"),
        ({"x": {"length": "2"}}, "length: needs a non-negative integer"),
        ({"x": {"length": {"a": 1}}}, "length: needs a number or a comparison"),
        ({"x": {"length": {"gte": "x"}}}, "length: gte: needs a number"),
        ({"x": {"not": {"gte": 1, "foo": 2}}}, "not: mixes operators"),
        ({"x": {"not": {"in": 1}}}, "not: in: needs a list"),
    ],
)
def test_static_problems(spec: dict[str, Any], fragment: str) -> None:
    problems = check_expect_spec(spec)
    assert len(problems) == 1, problems
    [(path, message)] = problems
    assert path == next(iter(spec))
    assert fragment in message


def test_static_problems_are_all_reported() -> None:
    problems = check_expect_spec({"a[": 1, "b": {"gte": "x", "lte": "y"}, "c": 1})
    assert [p for p, _ in problems] == ["a[", "b", "b"]


def test_static_check_of_non_mappings() -> None:
    assert check_expect_spec(["Vpcs[0].State"])[0][0] == ""
    assert check_expect_spec({1: "x"}) == [
        ("1", "the key must be a JMESPath expression (a string)")
    ]


# -- properties ---------------------------------------------------------------------------

ints = st.integers(min_value=-(10**6), max_value=10**6)
numbers = ints | st.floats(allow_nan=False, allow_infinity=False, width=32)
scalars = st.none() | st.booleans() | ints | st.text(max_size=5)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text("abcxyz", min_size=1, max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(ints, ints)
def test_numeric_operators_agree_with_python_on_ints(a: int, b: int) -> None:
    assert holds({"gte": b}, a) is (a >= b)
    assert holds({"lte": b}, a) is (a <= b)
    assert holds({"gt": b}, a) is (a > b)
    assert holds({"lt": b}, a) is (a < b)
    assert holds({"gte": b, "lte": b}, a) is (a == b)


@given(numbers, numbers)
def test_numeric_operators_mix_int_and_float(a: float, b: float) -> None:
    assert holds({"gte": b}, a) is (a >= b)
    assert holds({"lt": b}, a) is (a < b)
    assert holds(b, a) is (a == b)


@given(st.text(max_size=5) | st.booleans() | st.none() | st.lists(ints, max_size=2), ints)
def test_numeric_operators_refuse_non_numbers(actual: Any, b: int) -> None:
    for op in ("gte", "lte", "gt", "lt"):
        assert not holds({op: b}, actual)
        assert holds({"not": {op: b}}, actual)


@given(json_values, json_values)
def test_not_is_the_negation_of_equality(v: Any, actual: Any) -> None:
    if is_operator_mapping(v):
        return  # {not: {gte: 1}} negates the comparison, tested separately
    assert holds({"not": v}, actual) is (not holds(v, actual))
    assert holds(v, v)
    assert not holds({"not": v}, v)


@given(json_values)
def test_equality_is_reflexive_and_eq_agrees(v: Any) -> None:
    assert holds({"eq": v}, v)


@given(st.lists(ints, max_size=6), ints)
def test_in_is_membership(choices: list[int], x: int) -> None:
    assert holds({"in": choices}, x) is (x in choices)
    assert holds({"in": choices}, float(x)) is (x in choices)
    assert holds({"in": choices}, str(x)) is False


@given(st.lists(scalars, max_size=6), st.integers(min_value=0, max_value=8))
def test_length_is_len(items: list[Any], n: int) -> None:
    assert holds({"length": n}, items) is (len(items) == n)
    assert holds({"length": {"gte": n}}, items) is (len(items) >= n)


@given(json_values)
def test_exists_is_not_none(v: Any) -> None:
    assert holds({"exists": True}, v) is (v is not None)
    assert holds({"exists": False}, v) is (v is None)


@given(
    st.dictionaries(
        st.sampled_from(sorted(OPERATORS)),
        st.integers(min_value=0, max_value=3) | st.booleans() | st.lists(ints, max_size=2),
        min_size=1,
        max_size=3,
    ),
    json_values,
)
def test_evaluate_never_raises(spec: dict[str, Any], data: Any) -> None:
    # Whatever the operands and the data, a check answers; it does not crash.
    for m in evaluate({"v": spec, "@": spec}, {"v": data}):
        assert isinstance(str(m), str)
