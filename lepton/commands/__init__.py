"""CLI verbs, grouped by area; importing a module registers its verbs with lepton.cli.command."""

from lepton.commands import core, deploy, evaluation, jobs, study, tracking  # noqa: F401
