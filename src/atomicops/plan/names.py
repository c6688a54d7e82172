"""Names with a fixed meaning or shape (an environment, a step, the vars-file mark), kept apart
from the plan model so that commands that only read the journal, and the sandbox, use them
without loading pydantic."""

from __future__ import annotations

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
ID_MAX = 64
"""Longest plan name, operation id, step name or environment name: ``${step.key}``,
``<env>/<op>/<step>``, must fit an AWS tag value (256 characters)."""

OFFERED_MARK = "atomicops.vars"
"""A vars file holding ``atomicops.vars: offered`` offers its values: a plan takes those it
declares and passes over the rest. ``atomicops sandbox up`` writes its vars file so, since one
sandbox serves plans that each use some of its services. (A dot can never be in a var name.)"""
