"""Sealed forms: what the journal keeps of actions and outputs that hold secrets."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atomicops.engine.scope import Scope, sealed, secrets_only, shown, unsealed
from atomicops.engine.secrets import Secrets
from atomicops.plan.model import SecretSpec

VALUE = "canary-Zq81xP"


@pytest.fixture
def secrets(monkeypatch):
    monkeypatch.setenv("SEAL_PW", VALUE)
    return Secrets({"pw": SecretSpec(env="SEAL_PW")})


def test_the_plans_references_are_sealed_and_only_they_are_opened(secrets):
    forged = {"$sealed": [{"secret": "pw"}]}
    scope = Scope(env="e", run_id="r", vars={"text": "${secrets.pw}", "forged": forged})
    action = {"env": {"DSN": "postgres://u:${secrets.pw}@h/db", "T": "${vars.text}", "F": "${vars.forged}",
                      "E": "$${secrets.pw} $${HOME}"}}
    journalled = scope.sealed_form(action, secrets)
    assert VALUE not in json.dumps(journalled)
    assert journalled["env"]["DSN"] == {"$sealed": ["postgres://u:", {"secret": "pw", "uri": True}, "@h/db"]}
    opened = secrets_only(json.loads(json.dumps(journalled)), secrets)  # through the journal's JSON
    assert opened == {"env": {"DSN": f"postgres://u:{VALUE}@h/db", "T": "${secrets.pw}", "F": forged,
                              "E": "${secrets.pw} ${HOME}"}}


def test_a_secret_value_inside_data_becomes_a_reference(secrets):
    secrets.value("pw")
    out = sealed({"name": f"db-{VALUE}-1"}, secrets)
    assert out == {"name": {"$sealed": ["db-", {"secret": "pw"}, "-1"]}}
    assert shown(out) == {"name": "db-***-1"}
    assert unsealed(out, secrets.value) == {"name": f"db-{VALUE}-1"}


def test_a_journal_written_before_sealed_forms_still_rolls_back(secrets):
    old_undo = {"env": {"T": "${secrets.pw}", "U": "x-${secrets.gone}"}}
    assert secrets_only(old_undo, secrets) == {"env": {"T": VALUE, "U": "x-${secrets.gone}"}}


json_data = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["$sealed", "$data", "a", "secret"]) | st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@given(json_data)
def test_data_round_trips_through_the_journal_unchanged(data):
    secrets = Secrets({})
    journalled = json.loads(json.dumps(sealed(data, secrets)))
    assert secrets_only(journalled, secrets) == data


def test_a_secret_in_a_connection_uri_is_percent_encoded_in_both_forms(monkeypatch):
    monkeypatch.setenv("SEAL_PW", "p@ss:w/rd 1234")
    secrets = Secrets({"pw": SecretSpec(env="SEAL_PW")})
    scope = Scope(env="e", run_id="r")
    action = {"dsn": "postgresql://u:${secrets.pw}@h/db", "other": "x:${secrets.pw}", "whole": "${secrets.pw}"}
    executed = scope.exec_form(action, secrets)
    assert executed == {"dsn": "postgresql://u:p%40ss%3Aw%2Frd%201234@h/db", "other": "x:p@ss:w/rd 1234",
                        "whole": "p@ss:w/rd 1234"}
    assert type(executed["whole"]) is str
    assert secrets_only(scope.sealed_form(action, secrets), secrets) == executed
