"""``aws SERVICE OPERATION --args`` to ``service.operation`` and botocore parameters, by the
AWS CLI's own parser.

The AWS CLI (the ``awscli`` package, an optional extra: ``pip install 'atomicops[import]'``)
builds each operation's arguments from botocore's service model and its own customizations:
CLI names, shorthand (``Key=Name,Value=x``), JSON values, ``file://``, lists, ``--no-``
booleans, ``wait`` subcommands. Its command objects are driven here exactly as ``aws`` drives
them, except that the object that would send the request is replaced by one that keeps the
parameters: whatever the CLI would have sent is what the plan's ``aws:`` action sends.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from dataclasses import dataclass
from functools import cache
from typing import Any

from atomicops.errors import AtomicOpsError, UsageError

INSTALL_HINT = "pip install 'atomicops[import]'"


class AwsCliMissing(UsageError):
    """``atomicops import`` needs the AWS CLI's parser."""

    def __init__(self) -> None:
        super().__init__(f"atomicops import reads AWS CLI commands with the awscli package: {INSTALL_HINT}")


@dataclass(frozen=True)
class AwsCall:
    service: str  # botocore's service name (``ec2``, ``logs``)
    operation: str  # python name (``create_vpc``)
    params: dict[str, Any]
    query: str | None = None  # ``--query``: JMESPath over the response
    region: str | None = None
    waiter: str | None = None  # for ``aws SVC wait NAME``: the waiter's python name


class CallRefused(AtomicOpsError):
    """The AWS CLI refused the command; ``reason`` is what ``aws`` would have printed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Captured(Exception):
    def __init__(self, service: str, operation: str, params: dict[str, Any]) -> None:
        super().__init__(operation)
        self.service, self.operation, self.params = service, operation, params


class _Keeper:
    """Stands where ``CLIOperationCaller`` sends the request: it keeps the parameters."""

    def invoke(self, service_name: str, operation_name: str, parameters: dict[str, Any], parsed_globals: Any) -> int:
        raise _Captured(service_name, operation_name, parameters)


@cache
def _driver() -> Any:
    # awscli >= 1.46 carries its own copy of botocore and, once imported, answers a later
    # `import botocore`/`import s3transfer` with it. Both are imported first so this process
    # keeps the botocore boto3 and the engine use (the one whose models the plan is checked
    # against); the CLI's modules then run on it too.
    import botocore.session  # noqa: F401
    import s3transfer  # noqa: F401

    # Importing awscli also adds its data directory to AWS_DATA_PATH, for every botocore
    # session made after it in this process and its children: the CLI's session reads it
    # here, and the variable is then given back as it was.
    saved = os.environ.get("AWS_DATA_PATH")
    try:
        from awscli.clidriver import create_clidriver
        from awscli.paramfile import LOCAL_PREFIX_MAP, URIArgumentHandler

        driver = create_clidriver()
        driver._get_cli_data()
    except ImportError:
        raise AwsCliMissing() from None
    finally:
        if saved is None:
            os.environ.pop("AWS_DATA_PATH", None)
        else:
            os.environ["AWS_DATA_PATH"] = saved
    # `aws` registers this when its session starts: `file://` and `fileb://` values are read.
    # Only the local prefixes: an import never fetches an http(s):// parameter.
    driver.session.register("load-cli-arg", URIArgumentHandler(dict(LOCAL_PREFIX_MAP)))
    return driver


def translate(args: list[str]) -> AwsCall:
    """The call ``aws ARGS...`` would make (``args`` without the leading ``aws``)."""
    driver = _driver()
    table = driver._get_command_table()
    parser = driver._create_parser(table)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            parsed, remaining = parser.parse_known_args(args)
            service_cmd = table[parsed.command]
            if not hasattr(service_cmd, "_create_parser") or not hasattr(service_cmd, "_get_command_table"):
                raise CallRefused(f"`aws {parsed.command}` is a CLI command, not an API call (no botocore operation to map it to)")
            sub_parsed, rest = service_cmd._create_parser().parse_known_args(remaining)
            op_cmd = service_cmd._get_command_table()[sub_parsed.operation]
            waiter = None
            if sub_parsed.operation == "wait":
                wait_parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
                wait_parser.add_argument("name", choices=sorted(op_cmd.subcommand_table))
                named, rest = wait_parser.parse_known_args(rest)
                op_cmd = op_cmd.subcommand_table[named.name]
                waiter = named.name
            if not hasattr(op_cmd, "_operation_caller"):
                raise CallRefused(f"`aws {parsed.command} {sub_parsed.operation}` is a CLI customization, not an API call")
            op_cmd._operation_caller = _Keeper()
            op_cmd(rest, parsed)
        except _Captured as got:
            return _call(got, parsed, waiter)
        except SystemExit:
            raise CallRefused(_argparse_message(err.getvalue())) from None
        except (argparse.ArgumentError, KeyError) as exc:
            raise CallRefused(str(exc)) from None
        except AtomicOpsError:
            raise
        except Exception as exc:  # noqa: BLE001 - the CLI's own errors: ParamError, UnknownArgumentError...
            raise CallRefused(_first_line(str(exc)) or type(exc).__name__) from None
    raise CallRefused("the AWS CLI would not call an API for this command (help, a skeleton or a customization)")


def _call(got: _Captured, parsed: Any, waiter: str | None) -> AwsCall:
    from botocore import xform_name

    query = getattr(parsed, "query", None)
    return AwsCall(
        service=got.service,
        operation=xform_name(got.operation),
        params=got.params,
        query=getattr(query, "expression", query),
        region=getattr(parsed, "region", None),
        waiter=waiter.replace("-", "_") if waiter else None,
    )


def _argparse_message(text: str) -> str:
    if "argument operation: Invalid choice" in text:
        text = text.replace("argument operation: Invalid choice, valid choices are:", "unknown operation")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln]
    message = errors[-1].split("error:", 1)[1].strip() if errors else " ".join(lines[-2:])
    if message.startswith("unknown operation"):
        message = "unknown operation"
    hint = [ln for ln in lines if ln.startswith("* ")]
    return message + (f" (maybe {hint[0][2:]})" if hint else "")


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
