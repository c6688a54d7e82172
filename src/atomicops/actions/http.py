"""``http``: one HTTP request, for health checks and service APIs.

``{http: {method, url, json, headers, timeout, ok_status}}``; result ``{status, json, body,
headers}`` where ``json`` is the body parsed as JSON when it is JSON. A status outside
``ok_status`` (default: any 2xx) fails the action; 5xx and connection failures are transient.
Uses the standard library: a health check needs no extra dependency.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from atomicops.actions.base import ActionContext, ActionKind, CheckIssue
from atomicops.actions.registry import register
from atomicops.errors import ActionError

_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
_ARGS = {"method", "url", "json", "body", "headers", "timeout", "ok_status"}
DEFAULT_TIMEOUT = 10.0
_BODY_LIMIT = 1 << 20  # 1 MiB kept of a response body


@register
class HttpKind(ActionKind):
    key = "http"

    def check(self, action: Mapping[str, Any]) -> Iterable[CheckIssue]:
        spec = action.get("http")
        if not isinstance(spec, Mapping):
            yield CheckIssue(("http",), "http takes a mapping: {method, url, json, headers, timeout}")
            return
        for k in spec:
            if k not in _ARGS:
                yield CheckIssue(("http", k), f"unknown http key {k!r} (allowed: {', '.join(sorted(_ARGS))})")
        url = spec.get("url")
        if not isinstance(url, str) or not url:
            yield CheckIssue(("http", "url"), "url is required")
        elif "${" not in url and urlsplit(url).scheme not in ("http", "https"):
            yield CheckIssue(("http", "url"), f"url must be http:// or https://, got {url!r}")
        method = spec.get("method", "GET")
        if isinstance(method, str) and "${" not in method and method.upper() not in _METHODS:
            yield CheckIssue(("http", "method"), f"unknown method {method!r}")
        if "json" in spec and "body" in spec:
            yield CheckIssue(("http",), "give json or body, not both")

    def writes(self, action: Mapping[str, Any]) -> bool:
        spec = action.get("http")
        method = spec.get("method", "GET") if isinstance(spec, Mapping) else None
        return not (isinstance(method, str) and method.upper() in ("GET", "HEAD"))

    def execute(self, action: Mapping[str, Any], ctx: ActionContext) -> Any:
        spec = action["http"]
        method = str(spec.get("method", "GET")).upper()
        headers = {str(k): str(v) for k, v in (spec.get("headers") or {}).items()}
        data: bytes | None = None
        if "json" in spec:
            data = json.dumps(spec["json"]).encode()
            headers.setdefault("Content-Type", "application/json")
        elif spec.get("body") is not None:
            data = str(spec["body"]).encode()
        timeout = float(spec.get("timeout") or ctx.timeout or DEFAULT_TIMEOUT)
        url = str(spec["url"])
        # Imported here: every command that loads the action kinds (validate) would pay for
        # urllib.request (http.client, email, ssl) otherwise.
        import urllib.error
        import urllib.request

        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                status, body, resp_headers = resp.status, resp.read(_BODY_LIMIT), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            status, body, resp_headers = exc.code, exc.read(_BODY_LIMIT), dict(exc.headers or {})
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ActionError("http", f"{method} {_where(url)}: {reason}", code="ConnectionError", transient=True) from None
        text = body.decode("utf-8", errors="replace")
        result = {"status": status, "body": text, "json": _json(text), "headers": resp_headers}
        ok = spec.get("ok_status")
        good = status in ok if isinstance(ok, list) else 200 <= status < 300
        if not good:
            raise ActionError(
                "http", f"{method} {_where(url)} answered {status}", code=f"HTTP{status}",
                transient=status >= 500, result=result,
            )
        return result

    def describe(self, action: Mapping[str, Any]) -> str:
        spec = action.get("http") or {}
        return f"http {str(spec.get('method', 'GET')).upper()} {_where(str(spec.get('url', '')))}"


def _where(url: str) -> str:
    """The URL without credentials or query (either may carry secrets)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _json(text: str) -> Any:
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        return None
