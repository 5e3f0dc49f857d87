"""Commands from other packages: the entry-point group ``bench.commands``.

Each entry point names a click command or group (``name = "package.module:attr"``); ``bench`` shows it beside
its built-in commands under the entry point's name. Finding them reads entry-point metadata only; a command's
module is imported when the command runs or its help is shown, never to run another command. A command that
cannot be used — its module fails to import, its target is not a click command, several packages register its
name — becomes a stand-in that exits 2 with the reason; an entry point named like a built-in command is left
out with a warning, and the built-in runs. See docs/commands.md.
"""
from __future__ import annotations

from importlib.metadata import EntryPoint

import click

from bench.errors import BenchInputError
from bench.registry import entry_points_by_name, package_of

GROUP = "bench.commands"


def command_entry_points() -> dict[str, list[EntryPoint]]:
    """The group's entry points by name (several where packages disagree), without importing any."""
    return entry_points_by_name(GROUP)


def _describe(ep: EntryPoint) -> str:
    return f"{ep.value!r} of package {package_of(ep)}"


def load_command(name: str, eps: list[EntryPoint]) -> click.Command:
    """The click command entry point(s) ``eps`` name, or a stand-in that exits 2 saying why it cannot be used."""
    if len(eps) > 1:
        return _unusable(name, f"command {name!r} is registered by several packages "
                               f"({', '.join(_describe(ep) for ep in eps)}); uninstall or rename all but one")
    ep = eps[0]
    try:
        obj = ep.load()
    except Exception as exc:  # whatever a plugin's import raises, the other commands keep working
        return _unusable(name, f"command {name!r} ({_describe(ep)}) cannot be loaded: {type(exc).__name__}: {exc}")
    if not isinstance(obj, click.Command):
        return _unusable(name, f"command {name!r} ({_describe(ep)}) is {type(obj).__name__}, not a click command "
                               f"(decorate a function with @click.command() or @click.group())")
    return obj


def _unusable(name: str, reason: str) -> click.Command:
    def fail(args) -> None:
        raise BenchInputError(reason)

    return click.Command(name, callback=fail, add_help_option=False, help=reason,
                         short_help=f"(cannot be used: run `bench {name}` to see why)",
                         params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
                         context_settings={"ignore_unknown_options": True})


class CommandGroup(click.Group):
    """A click group whose commands are its own plus those of the entry-point group ``bench.commands``."""

    def _plugins(self) -> tuple[dict[str, list[EntryPoint]], dict[str, list[EntryPoint]]]:
        """(the plugin commands to add, those left out because a built-in command has their name)."""
        eps = command_entry_points()
        return ({n: e for n, e in eps.items() if n not in self.commands},
                {n: e for n, e in eps.items() if n in self.commands})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self._plugins()[0]))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        eps = self._plugins()[0].get(cmd_name)
        return load_command(cmd_name, eps) if eps else None

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name, cmd, rest = super().resolve_command(ctx, args)
        clash = self._plugins()[1].get(name)
        if clash:
            click.echo(f"warning: {_clash_note(name, clash)}", err=True)
        return name, cmd, rest

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_commands(ctx, formatter)
        clashes = self._plugins()[1]
        if clashes:
            with formatter.section("Plugin commands left out"):
                formatter.write_dl([(n, _clash_note(n, eps)) for n, eps in clashes.items()])


def _clash_note(name: str, eps: list[EntryPoint]) -> str:
    return (f"the command {name!r} from {', '.join(_describe(ep) for ep in eps)} is left out: {name!r} is a "
            f"built-in command of bench (rename its entry point in group {GROUP})")
