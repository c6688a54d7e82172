"""The importer's reading of markdown and bash, without services: sections and roles, commands
with their lines, placeholders and shell variables through the AWS CLI's parser."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from atomicops.importer import awscli_args, pairing
from atomicops.importer.markdown import parse_words, role_of, sections
from atomicops.importer.references import Symbols
from atomicops.importer.shell import split_block


def block(text: str):
    return split_block(text.splitlines(), 1)


def test_commands_keep_their_first_line_through_continuations_quotes_and_heredocs():
    cmds, errors = block(
        "# a comment\n"
        "aws ec2 create-vpc \\\n"
        "  --cidr-block 10.0.0.0/16\n"
        "\n"
        "aws iam create-role --role-name r --assume-role-policy-document '{\n"
        '  "Version": "2012-10-17"\n'
        "}'\n"
        "psql -d app <<-EOF\n"
        "\tSELECT 1;\n"
        "\tEOF\n"
        "export REGION=eu-west-1\n"
        "VPC_ID=$(aws ec2 create-vpc --cidr-block 10.1.0.0/16 \\\n"
        "  --query Vpc.VpcId --output text)\n"
    )
    assert errors == []
    assert [(c.line, c.end_line) for c in cmds] == [(2, 3), (5, 7), (8, 10), (11, 11), (12, 13)]
    assert cmds[0].words == ["aws", "ec2", "create-vpc", "--cidr-block", "10.0.0.0/16"]
    assert cmds[1].words[-1] == '{\n  "Version": "2012-10-17"\n}'
    assert cmds[2].heredoc == "\tSELECT 1;" and cmds[2].words == ["psql", "-d", "app"]
    assert (cmds[3].assign, cmds[3].value) == ("REGION", "eu-west-1")
    assert cmds[4].assign == "VPC_ID" and cmds[4].words[-4:] == ["--query", "Vpc.VpcId", "--output", "text"]


@pytest.mark.parametrize(("text", "line", "message"), [
    ("aws ec2 describe-vpcs\nX=$(aws ec2 create-vpc \\\n  --cidr-block 1\n", 2, "`$(` is never closed"),
    ("echo 'open\nstill open\n", 1, "a quote is never closed"),
    ("psql <<EOF\nSELECT 1;\n", 1, "heredoc `<<EOF` is never closed by a `EOF` line"),
])
def test_unclosed_text_is_an_error_at_the_line_it_opens(text, line, message):
    cmds, errors = block(text)
    assert [(e.line, e.message.split(" (")[0]) for e in errors] == [(line, message)]


@pytest.mark.parametrize(("text", "problem"), [
    ("aws ec2 describe-vpcs | jq .", None),  # a pipeline is kept, the translation refuses it
    ("aws ec2 delete-vpc --vpc-id $(cat id)", "a command substitution inside the command"),
    ("for x in a b; do echo $x; done", "a shell `for` construct"),
    ("make && make install", "joins commands"),
])
def test_what_a_runbook_cannot_mean_as_one_step_says_why(text, problem):
    cmds, _ = block(text)
    if problem is None:
        assert cmds[0].pipeline == [["jq", "."]]
    else:
        assert problem in (cmds[0].problem or "")


def test_placeholders_and_variables_pass_the_cli_parser_as_stand_ins_and_come_back_as_references():
    symbols = Symbols()
    (cmd,), _ = block("aws ec2 authorize-security-group-ingress --group-id $SG_ID --ip-permissions "
                      """'[{"IpProtocol": "tcp", "FromPort": <port>, "ToPort": <port>, "UserIdGroupPairs": [{"GroupId": "${OTHER}"}]}]'""")
    call = awscli_args.translate([symbols.encode(w, cmd.line) for w in cmd.words[1:]])
    refs = {"sg_id": "self.sg_id", "port": "vars.port", "other": "ops.net.other"}
    params = symbols.decode(call.params, refs.__getitem__)
    assert params == {"GroupId": "${self.sg_id}", "IpPermissions": [
        {"IpProtocol": "tcp", "FromPort": "${vars.port}", "ToPort": "${vars.port}", "UserIdGroupPairs": [{"GroupId": "${ops.net.other}"}]}]}
    assert [symbols.by_name[n].written for n in symbols.order] == ["$SG_ID", "<port>", "$OTHER"]


def test_the_cli_parser_leaves_the_process_on_the_botocore_boto3_uses():
    # A fresh process: awscli (>= 1.46) carries its own botocore and would answer a later
    # `import botocore` with it, and adds its data directory to AWS_DATA_PATH on import.
    script = (
        "import os, sys\n"
        "from atomicops.importer import awscli_args\n"
        f"call = awscli_args.translate(['iam', 'create-role', '--role-name', 'r', '--assume-role-policy-document', 'file://{__file__}'])\n"
        "import botocore, s3transfer, boto3.s3.transfer\n"
        "print(call.params['AssumeRolePolicyDocument'][:3], os.environ.get('AWS_DATA_PATH'))\n"
        "print(*sorted({m.__file__ for n, m in sys.modules.items() if n.split('.')[0] in ('botocore', 's3transfer') and getattr(m, '__file__', None)}), sep='\\n')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "AWS_DATA_PATH"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    first, *files = proc.stdout.splitlines()
    assert first == '""" None'  # file:// was read; AWS_DATA_PATH given back as it was
    assert files and not [f for f in files if "awscli" in f]


def test_sections_roles_and_phases_follow_the_headings():
    text = (
        "# Title\n\n## 1. Network\n\n### 1.1 VPC\n\n#### CREATE OPERATION\n```bash\naws ec2 create-vpc\n```\n"
        "#### Rollback\n```bash\naws ec2 delete-vpc\n```\n#### VERIFICATION\n```\naws ec2 describe-vpcs\n```\n"
        "## 2. ROLLBACK MECHANISMS\n### Alarm\n```bash\naws cloudwatch put-metric-alarm\n```\n"
        "## 3. Verification requirements\n### Health\n```bash\ncurl http://x\n```\n```json\n{}\n```\n"
    )
    got = [(s.title, s.phase, [(b.role, b.line) for b in s.blocks]) for s in sections(text)]
    assert got == [
        ("VPC", "Network", [("create", 9), ("rollback", 13), ("verify", 17)]),
        ("Alarm", "ROLLBACK MECHANISMS", [("create", 22)]),
        ("Health", "Verification requirements", [("verify", 27), ("verify", 30)]),
    ]
    words = parse_words("create=BUILD|MAKE,verify=PROVE")
    assert role_of("Build steps", words) == "create" and role_of("PROVE", words) == "verify"
    assert role_of("CREATE OPERATION", words) is None
    with pytest.raises(ValueError, match="ROLE=WORD"):
        parse_words("build=X")


@pytest.mark.parametrize(("create", "rollback", "score"), [
    ("create_vpc", "delete_vpc", 3), ("attach_role_policy", "detach_role_policy", 3),
    ("authorize_security_group_ingress", "revoke_security_group_ingress", 3),
    ("put_metric_alarm", "delete_alarms", 1), ("register_task_definition", "deregister_task_definition", 3),
    ("update_service", "update_service", 3), ("create_vpc", "delete_subnet", 0), ("create_role", "detach_role_policy", 0),
])
def test_undo_pairs_by_verb_and_resource_type(create, rollback, score):
    assert pairing.undoes(create, rollback) == score


@pytest.mark.parametrize(("service", "operation", "member", "path"), [
    ("ec2", "create_vpc", "VpcId", "Vpc.VpcId"), ("ec2", "create_security_group", "GroupId", "GroupId"),
    ("iam", "create_policy", "PolicyArn", "Policy.Arn"), ("sqs", "create_queue", "QueueUrl", "QueueUrl"),
    ("ec2", "create_vpc", "SubnetId", None),
])
def test_the_id_a_create_makes_is_found_in_its_output_shape(service, operation, member, path):
    assert pairing.output_path(service, operation, member) == path
