"""``atomicops import``: a markdown runbook of AWS CLI, ``psql`` and ``docker`` commands
turned into a plan, with the list of what is left for a person.

    result = import_runbook("RUNBOOK.md")      # convert.Imported: plan, left, figures
    write(result, "imported/")                  # plan.yaml + IMPORT.md, all or nothing

Modules, one job each: :mod:`.markdown` (sections and blocks), :mod:`.shell` (commands of a
block), :mod:`.awscli_args` (the AWS CLI's parser), :mod:`.references` (placeholders and
shell variables), :mod:`.commands` (a command as an action), :mod:`.pairing` (undo pairs),
:mod:`.convert` (the plan), :mod:`.writer` (the files).
"""

from __future__ import annotations

from atomicops.importer.convert import Imported, Left, import_runbook
from atomicops.importer.writer import plan_text, report_text, write

__all__ = ["Imported", "Left", "import_runbook", "plan_text", "report_text", "write"]
