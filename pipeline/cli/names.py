"""Help texts that list the names users type, filled from the registries when help is shown.

An option's help may hold `{interfaces}`, `{tasks}` (pipeline/names.py: the module files and
what was registered in this process), `{upstreams}` (pipeline.upstreams.registry.REGISTRY) or
`{probe_tasks}` (the tasks pipeline.analysis.probe can probe); a command made with
`cls=RegistryHelp` fills them in when its `--help` renders, so a new registration shows up
without editing the CLI. The registries are imported then, not when this module loads: they
import torch, which `pipeline --help` and the `pipeline data` stages (whose DVC dependencies
are their import closure) need not load.
"""

from __future__ import annotations

import string
from typing import Any

from pipeline.cli.options import AllRequired


def registered_names() -> dict[str, str]:
    """{placeholder: "name, name, ..."} for every registry a help text may list."""
    from pipeline import names
    from pipeline.analysis.probe import CLASSIFIER_TASKS, CTC_TASKS
    from pipeline.upstreams.registry import REGISTRY as UPSTREAMS

    return {
        "interfaces": ", ".join(names.known("interface")),
        "tasks": ", ".join(names.known("task")),
        "upstreams": ", ".join(UPSTREAMS),
        "probe_tasks": ", ".join(CLASSIFIER_TASKS + CTC_TASKS),
    }


def fill(text: str, names: dict[str, str]) -> str:
    """`text` with each `{placeholder}` of `names` replaced; other braces are left as they are."""
    out = []
    for literal, field, _, _ in string.Formatter().parse(text):
        out.append(literal)
        if field is not None:
            out.append(names[field] if field in names else "{" + field + "}")
    return "".join(out)


class RegistryHelp(AllRequired):
    """A command whose options' help texts name the registered interfaces, tasks, upstreams,
    and that reports every missing required option at once (pipeline/cli/options.py)."""

    def format_help(self, ctx: Any, formatter: Any) -> Any:
        names = registered_names()
        for p in self.params:  # the template is kept: a later registration shows up too
            template = getattr(p, "help_template", None) or getattr(p, "help", None) or ""
            if "{" in template:
                p.help_template, p.help = template, fill(template, names)
        return super().format_help(ctx, formatter)
