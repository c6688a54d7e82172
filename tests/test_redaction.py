"""The redactor masks a secret in every form it commonly takes in text, and long text is cut
only where a secret cannot be split (so its kept part is never an unmasked fragment)."""

from __future__ import annotations

import base64
import json
import shlex
from urllib.parse import quote, quote_plus

import pytest

from atomicops import api
from atomicops.engine.secrets import Redactor
from atomicops.errors import RunFailed
from atomicops.expect import Mismatch

SECRET = 'canary:@/"\\ x+y%z\'q'


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        json.dumps(SECRET)[1:-1],  # inside a JSON string
        json.dumps(SECRET, ensure_ascii=False)[1:-1],
        SECRET.replace("\\", "\\\\"),  # backslash-escaped
        repr(SECRET)[1:-1],
        quote(SECRET, safe=""),  # URL-encoded, as in a DSN or a query
        quote(SECRET),
        quote_plus(SECRET),
        shlex.quote(SECRET),
        base64.b64encode(SECRET.encode()).decode(),
    ],
)
def test_every_common_encoding_of_a_secret_is_masked(form):
    r = Redactor()
    r.add(SECRET)
    assert r.text(f"before {form} after") == "before *** after"


CUT_PLAN = """
atomicops: 1
name: cut
secrets:
  tok: {env: CUT_TOKEN}
operations:
  - id: a
    steps:
      - name: s
        read_only: true
        do: {run: ["sh", "-c", "printf 'error: token %s %s' \\"$T\\" \\"$PAD\\" >&2; exit 1"], env: {T: "${secrets.tok}", PAD: "${vars.pad}"}}
vars: {pad: ""}
"""


def test_a_command_error_is_cut_before_a_secret_not_inside_it(tmp_path, monkeypatch):
    secret = "canary-" + "0123456789abcdef" * 2
    monkeypatch.setenv("CUT_TOKEN", secret)
    (tmp_path / "plan.yaml").write_text(CUT_PLAN)
    # The run kind keeps the last 2000 characters of stderr: the secret straddles that cut.
    with pytest.raises(RunFailed) as exc:
        api.apply(tmp_path / "plan.yaml", state=str(tmp_path / "j.db"), vars={"pad": "y" * 1985})
    message = str(exc.value)
    assert "y" * 1985 in message
    assert secret[-14:] not in message  # without the fix: the secret's last 14 characters


def test_a_mismatch_never_shows_part_of_a_long_value():
    secret = "canary-" + "0123456789abcdef" * 2
    observed = "x " * 90 + secret + " tail"
    text = str(Mismatch("json.t", "other", observed))
    r = Redactor()
    r.add(secret)
    shown = r.text(text)
    assert "canary" not in shown and "0123456789" not in shown


OBSERVES_PLAN = r"""
atomicops: 1
name: observes
secrets:
  tok: {env: CUT_TOKEN}
operations:
  - id: a
    steps:
      - {name: s, do: {run: ["true"]}, undo: {run: ["true"]}}
verify:
  - {name: observes, run: ["sh", "-c", "printf '{\"t\": \"%s\"}' \"$T\""], env: {T: "${secrets.tok}"}, expect: {"json.t": other}}
"""


def test_the_python_api_never_returns_an_observed_secret(tmp_path, monkeypatch):
    secret = "canary-" + "0123456789abcdef" * 2
    monkeypatch.setenv("CUT_TOKEN", secret)
    (tmp_path / "plan.yaml").write_text(OBSERVES_PLAN)
    state = str(tmp_path / "j.db")
    with pytest.raises(RunFailed) as exc:
        api.apply(tmp_path / "plan.yaml", state=state)
    assert secret not in str(exc.value)
    assert secret not in json.dumps(exc.value.report.verify)  # type: ignore[attr-defined]
    with pytest.raises(RunFailed):
        api.apply(tmp_path / "plan.yaml", state=state, on_failure="keep")  # left applied
    results = api.verify(tmp_path / "plan.yaml", state=state)
    assert [r["ok"] for r in results] == [False]
    assert secret not in json.dumps(results)
