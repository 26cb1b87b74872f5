"""App commands with two-word names (`faust -A app dlq list`): Faust registers every app command on its
root `faust` group; this base class puts a command on a click group of its own instead."""
from __future__ import annotations

import sys
from functools import wraps
from typing import Any, ClassVar, NoReturn

import click
from faust.cli.base import AppCommand
from mode.worker import exiting


class GroupedAppCommand(AppCommand):
    """Subclasses set `group` (a click group added to Faust's `cli`); `cli_name` names the subcommand."""

    abstract: ClassVar[bool] = True
    group: ClassVar[click.Group]
    cli_name: ClassVar[str]

    @classmethod
    def as_click_command(cls) -> Any:
        # faust.cli.base.AppCommand.as_click_command, registering on `group` instead of the root.
        @click.pass_context
        @wraps(cls)
        def _inner(*args: Any, **kwargs: Any) -> NoReturn:
            command = cls(*args, **kwargs)
            with exiting(print_exception=True, file=sys.stderr):
                command()

        for decorate in reversed(cls.options or []):
            _inner = decorate(_inner)
        return cls.group.command(name=cls.cli_name, help=cls.__doc__)(_inner)
