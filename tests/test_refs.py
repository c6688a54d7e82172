"""References: parsing, type-keeping resolution, formatting inside strings, escapes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atomicops.engine.scope import Scope, secrets_only
from atomicops.engine.secrets import Secrets
from atomicops.errors import ReferenceError_
from atomicops.plan import refs
from atomicops.plan.model import SecretSpec


def scope(**kw):
    base = dict(
        env="dev",
        run_id="r1",
        vars={"region": "us-east-1", "n": 3, "cidrs": ["10.0.1.0/24", "10.0.2.0/24"], "nested": {"a": {"b": 7}}},
        ops_outputs=lambda op: {"vpc": {"vpc_id": "vpc-1", "ids": ["a", "b"]}}.get(op, {}),
    )
    base.update(kw)
    return Scope(**base)


def test_whole_value_keeps_its_type():
    s = scope()
    assert s.journal_form("${vars.n}") == 3
    assert s.journal_form("${vars.cidrs}") == ["10.0.1.0/24", "10.0.2.0/24"]
    assert s.journal_form("${ops.vpc.ids}") == ["a", "b"]
    assert s.journal_form({"x": ["${vars.nested}"]}) == {"x": [{"a": {"b": 7}}]}


def test_embedded_reference_is_formatted_into_text():
    s = scope()
    assert s.journal_form("arn:${vars.region}:${vars.n}") == "arn:us-east-1:3"
    assert s.journal_form("list=${vars.cidrs}") == 'list=["10.0.1.0/24","10.0.2.0/24"]'
    assert s.journal_form("${env}/${run.id}") == "dev/r1"


def test_paths_dig_into_mappings_and_lists():
    s = scope()
    assert s.journal_form("${vars.nested.a.b}") == 7
    assert s.journal_form("${vars.cidrs.1}") == "10.0.2.0/24"
    with pytest.raises(ReferenceError_, match="'zz' not found"):
        s.journal_form("${vars.nested.zz}")


def test_escaped_reference_is_literal():
    assert scope().journal_form("$${vars.region} costs ${vars.n}") == "${vars.region} costs 3"


def test_self_and_step_key_only_where_known():
    s = scope()
    with pytest.raises(ReferenceError_):
        s.journal_form("${self.x}")
    with pytest.raises(ReferenceError_):
        s.journal_form("${step.key}")
    inner = s.with_self({"x": 1}, "dev/op/step")
    assert inner.journal_form("${self.x}-${step.key}") == "1-dev/op/step"


def test_secrets_stay_references_in_journal_form_and_resolve_for_execution(monkeypatch):
    monkeypatch.setenv("QS_PASSWORD", "canary-Zq81xP")
    secrets = Secrets({"pw": SecretSpec(env="QS_PASSWORD")})
    s = scope()
    action = {"params": {"Password": "${secrets.pw}", "Dsn": "postgres://u:${secrets.pw}@h/db"}}
    assert s.journal_form(action) == action
    run = s.exec_form(action, secrets)
    assert run["params"]["Password"] == "canary-Zq81xP"
    assert run["params"]["Dsn"] == "postgres://u:canary-Zq81xP@h/db"
    assert secrets_only(s.journal_form(action), secrets) == run
    assert secrets.redactor.text(run["params"]["Dsn"]) == "postgres://u:***@h/db"


@pytest.mark.parametrize(
    "text, message",
    [
        ("nope.x", "unknown namespace"),
        ("vars", "incomplete"),
        ("ops.vpc", "incomplete"),
        ("secrets.a.b", "referenced whole"),
        ("step.id", "only ${step.key}"),
        ("env.x", "takes no path"),
        ("vars.bad name", "bad name"),
    ],
)
def test_malformed_references_are_rejected(text, message):
    with pytest.raises(refs.RefSyntaxError, match=message if message.isalnum() else None) as exc:
        refs.parse(text)
    assert message in str(exc.value)


def test_refs_in_reports_the_path_of_each_reference():
    value = {"a": ["x ${vars.a}", {"b": "${ops.o.p}"}], "c": "$${vars.not_a_ref}"}
    assert list(refs.refs_in(value)) == [("vars.a", ("a", 0)), ("ops.o.p", ("a", 1, "b"))]


_scalars = st.one_of(st.integers(), st.booleans(), st.text(max_size=20), st.none(), st.floats(allow_nan=False))
_values = st.recursive(_scalars, lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=5), c, max_size=4)), max_leaves=12)


@given(_values)
def test_any_var_value_round_trips_through_a_whole_value_reference(value):
    assert scope(vars={"v": value}).journal_form("${vars.v}") == value


@given(st.text(alphabet=st.characters(blacklist_characters="${}"), min_size=1, max_size=30), st.integers())
def test_text_without_references_is_unchanged_and_embedding_formats(prefix, number):
    s = scope(vars={"v": number})
    assert s.journal_form(prefix) == prefix
    assert s.journal_form(prefix + "${vars.v}") == prefix + str(number)
