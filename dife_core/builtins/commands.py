"""Built-in CLI commands that need no model code: plugin and card listings."""

from __future__ import annotations

import json

import click

from dife_core import hookimpl


def _table(title: str, columns: list, rows: list, records: list = None) -> None:
    """A table when it fits the terminal (each word of a cell kept whole),
    else one block per row. Every plugin string is shown as plain text:
    no rich markup is parsed, control and bidi characters are escaped."""
    from rich.console import Console

    from dife_core.report.layout import card_blocks, natural_width, table
    from dife_core.safetext import terminal

    console = Console()
    width = console.width
    safe_rows = [[terminal(x) if x is not None else "" for x in r] for r in rows]
    t = table(title, [c.replace("_", " ") for c in columns], safe_rows)
    measure = console.measure(t)
    # a table only where its columns get room: the longest words need at most 60% of the width
    if natural_width(t) <= width or measure.minimum <= 0.6 * width:
        console.print(t)
        return
    recs = [dict(zip(columns, r)) for r in safe_rows]
    for r in card_blocks(title, recs, columns, lambda v: v):
        console.print(r)


@hookimpl
def register_commands(cli):
    from .report_commands import register_report_commands

    register_report_commands(cli)

    @cli.command("list-plugins")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    @click.option("--all", "show_all", is_flag=True, help="Include DIFE's built-in plugins.")
    def list_plugins(as_json: bool, show_all: bool):
        """List installed plugins: distribution, version, hooks and what each provides."""
        from dife_core.plugins import get_registry

        infos = [i.to_dict() for i in get_registry().plugin_infos(include_builtins=show_all)]
        if as_json:
            click.echo(json.dumps(infos, indent=2))
            return
        rows = []
        for i in infos:
            provides = "; ".join(f"{k}: {', '.join(v)}" for k, v in i["provides"].items())
            rows.append((i["name"], i["version"] or "built-in", provides, i["error"] or "ok"))
        _table("DIFE plugins", ["plugin", "version", "provides", "status"], rows)

    def _cards_command(kind: str, help_text: str, describe, table_columns):
        @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
        def command(as_json: bool):
            from dife_core.plugins import get_registry

            reg = get_registry()
            items = reg.all(kind)
            records = []
            for name in sorted(items):
                rec = describe(items[name])
                rec["plugin"] = reg.owner(kind, name)
                records.append(rec)
            if as_json:
                click.echo(json.dumps(records, indent=2))
                return
            if not records:
                click.echo(f"No {kind} registered.")
                return
            # the table shows the columns a reader scans; --json has every field
            cols = [c for c in table_columns if c in records[0]]
            _table(f"DIFE {kind}", cols, [[_fmt(r[c]) for c in cols] for r in records])

        command.__doc__ = help_text
        return command

    cli.command("interfaces")(
        _cards_command("interfaces", "List the registered deployment-interface cards.",
                       lambda i: i.card.to_dict(),
                       ["name", "readout", "trigger_channels", "target_event", "reference", "metric"])
    )
    def _attack(a):
        from dife_core.building import config_fields

        rec = __import__("attrs").asdict(a.card)
        # the documented config defaults (what a build uses for every key its spec leaves out)
        rec["config"] = {f["name"]: {"default": config_to_dict_value(f["default"]), "doc": f["doc"]}
                         for f in config_fields(a.config)}
        return rec

    cli.command("attacks")(
        _cards_command("attacks", "List the registered attacks, their cards and config defaults (--json).",
                       _attack,
                       ["name", "title", "route", "modifies", "trigger_channel", "native_protocol"])
    )
    cli.command("triggers")(
        _cards_command("triggers", "List the registered trigger channels.",
                       lambda t: {"name": t.name, "channel": t.channel,
                                  "description": t.description, "defaults": t.defaults},
                       ["name", "channel", "description"])
    )


def config_to_dict_value(v):
    """A config default as JSON data (tuples as lists, attrs/other objects as text)."""
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [config_to_dict_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): config_to_dict_value(x) for k, x in v.items()}
    return str(v)


def _fmt(v):
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v))
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return v
