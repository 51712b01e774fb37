"""Help for people, in one place for every command: prose that wraps to the terminal, an
`Example:` paragraph kept whole, and values named as the user types them (`--limit LIMIT`,
`--format [csv|jsonl]`) instead of by Python type (`<int range>`, `<list[str]>`).

Typer builds each command with its own classes; the root group hands every command under
it to `adopt`, so the command modules need nothing to get this help.
"""

from __future__ import annotations

import inspect
import re
from enum import Enum

from typer import _click
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

_EXAMPLE = re.compile(r"Examples?:")
RAW_PARAGRAPH = "\b"  # click's mark for a paragraph printed without rewrapping


def help_text(help: str | None) -> str:
    """The docstring's paragraphs, each rewrapped as prose except examples (a command line
    broken over two lines cannot be pasted)."""
    text = inspect.cleandoc(help or "").partition("\f")[0]
    paragraphs = text.split("\n\n")
    return "\n\n".join(
        f"{RAW_PARAGRAPH}\n{p}" if _EXAMPLE.match(p) and not p.startswith(RAW_PARAGRAPH) else p
        for p in paragraphs
    )


def value_name(param: _click.Parameter) -> str:
    """What an option's value or an argument is called in help and usage."""
    if param.metavar:
        return param.metavar
    choices = _choices(param)
    if choices:
        return f"[{'|'.join(choices)}]"
    return (param.name or "value").upper()


def usage_piece(param: _click.Parameter) -> list[str]:
    if not isinstance(param, TyperArgument):
        return []  # options are summed up by [OPTIONS]
    name = value_name(param) + ("..." if param.nargs != 1 else "")
    return [name if param.required else f"[{name}]"]


def help_record(param: _click.Parameter) -> tuple[str, str] | None:
    """The two columns of a parameter's help line: `-n, --limit LIMIT` and its text with
    the facts in brackets (env var, default, range, choices, required)."""
    if getattr(param, "hidden", False):
        return None
    if isinstance(param, TyperArgument):
        name = value_name(param) + ("..." if param.nargs != 1 else "")
    else:
        name = _option_names(param)
    facts = "; ".join(_facts(param))
    text = (param_help(param) + (f"  [{facts}]" if facts else "")).strip()
    return name, text


def param_help(param: _click.Parameter) -> str:
    return " ".join(str(getattr(param, "help", None) or "").split())


def _option_names(param: _click.Parameter) -> str:
    def dashes(opt: str) -> int:
        return len(opt) - len(opt.lstrip("-"))

    names = ", ".join(sorted(param.opts, key=dashes))
    if param.secondary_opts:
        names += " / " + ", ".join(sorted(param.secondary_opts, key=dashes))
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return names
    return f"{names} {value_name(param)}"


def _facts(param: _click.Parameter) -> list[str]:
    facts: list[str] = []
    envvar = getattr(param, "envvar", None)
    if envvar and getattr(param, "show_envvar", False):
        facts.append(f"env var: {envvar if isinstance(envvar, str) else ', '.join(envvar)}")
    default = _default(param)
    if default:
        facts.append(f"default: {default}")
    bounds = _bounds(param)
    if bounds:
        facts.append(bounds)
    choices = _choices(param)
    if choices and param.metavar:
        facts.append(f"one of: {', '.join(choices)}")
    if param.required:
        facts.append("required")
    return facts


def _default(param: _click.Parameter) -> str | None:
    shown = getattr(param, "show_default", None)
    if isinstance(shown, str):
        return shown
    default = param.default
    if not shown or getattr(param, "is_flag", False) or callable(default):
        return None
    if default is None or default is False or default in ((), []):
        return None
    return str(default.value if isinstance(default, Enum) else default)


def _bounds(param: _click.Parameter) -> str | None:
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if low is not None and high is not None:
        return f"{low} to {high}"
    if low is not None:
        return f"at least {low}"
    if high is not None:
        return f"at most {high}"
    return None


def _choices(param: _click.Parameter) -> list[str]:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None or not descriptor.is_choice:
        return []
    return [str(c.value if isinstance(c, Enum) else c) for c in descriptor.choices or ()]


def summary(command: _click.Command) -> str:
    """A command's one-line description: its short help, else its help's first paragraph."""
    text = command.short_help or inspect.cleandoc(command.help or "").split("\n\n")[0]
    return " ".join(text.split())


def format_help_text(
    command: _click.Command, ctx: _click.Context, formatter: _click.HelpFormatter
) -> None:
    text = help_text(command.help)
    if text:
        formatter.write_paragraph()
        with formatter.indentation():
            formatter.write_text(text)


def usage_pieces(command: _click.Command, ctx: _click.Context) -> list[str]:
    pieces = [command.options_metavar] if command.options_metavar else []
    for param in command.get_params(ctx):
        pieces += usage_piece(param)
    return pieces


def format_params(
    command: _click.Command, ctx: _click.Context, formatter: _click.HelpFormatter
) -> None:
    records = [(param, help_record(param)) for param in command.get_params(ctx)]
    for title, kind in (("Arguments", TyperArgument), ("Options", TyperOption)):
        rows = [record for param, record in records if record and isinstance(param, kind)]
        if rows:
            with formatter.section(title):
                formatter.write_dl(rows)


# Plain subclasses (no mixin, no new state): `adopt` can switch a built command's class.
class HelpCommand(TyperCommand):
    format_help_text = format_help_text

    def collect_usage_pieces(self, ctx: _click.Context) -> list[str]:
        return usage_pieces(self, ctx)

    def format_options(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        format_params(self, ctx, formatter)


class HelpGroup(TyperGroup):
    format_help_text = format_help_text

    def collect_usage_pieces(self, ctx: _click.Context) -> list[str]:
        return [*usage_pieces(self, ctx), self.subcommand_metavar]

    def format_options(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        format_params(self, ctx, formatter)
        self.format_commands(ctx, formatter)

    def format_commands(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        """Each command with its first paragraph, wrapped (click cuts it short with `...`)."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, summary(command)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


_OURS: dict[type, type] = {TyperCommand: HelpCommand, TyperGroup: HelpGroup}


def adopt(command: _click.Command) -> None:
    """Give `command` and every command under it this module's help. A command built with
    a class of its own (`cls=`) keeps it."""
    ours = _OURS.get(type(command))
    if ours is not None:
        command.__class__ = ours
    for sub in getattr(command, "commands", {}).values():
        adopt(sub)
