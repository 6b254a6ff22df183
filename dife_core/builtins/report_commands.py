"""`dife compare` and `dife export`: read finished audits, write nothing
into them. Registered from :mod:`dife_core.builtins.commands`."""

from __future__ import annotations

import sys

import click


def register_report_commands(cli) -> None:
    @cli.command("compare")
    @click.argument("run_a", type=click.Path())
    @click.argument("run_b", type=click.Path())
    @click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON.")
    @click.option("--markdown", "as_markdown", is_flag=True, help="Print the differences as Markdown.")
    @click.option("--exit-code", "exit_code", is_flag=True,
                  help="Exit 1 when the runs differ (like `git diff --exit-code`), 0 when they do not.")
    def compare_cmd(run_a, run_b, as_json, as_markdown, exit_code):
        """Compare two audits (output folders or results.json files): cells whose status changed or whose
        value moved beyond its interval, changed footprints and verdicts, checkpoints and interfaces audited
        in one run only. See docs/reports.md."""
        from dife_core.engine.compare import compare
        from dife_core.report.compare import compare_json, compare_markdown, print_compare
        from dife_core.report.load import load_run

        if as_json and as_markdown:
            raise click.UsageError("choose one of --json and --markdown")
        diff = compare(load_run(run_a), load_run(run_b))
        if as_json:
            click.echo(compare_json(diff, run_a, run_b), nl=False)
        elif as_markdown:
            click.echo(compare_markdown(diff, run_a, run_b), nl=False)
        else:
            print_compare(diff, run_a, run_b)
        if exit_code and not diff["identical"]:
            raise SystemExit(1)

    @cli.command("export")
    @click.argument("run", type=click.Path())
    @click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True,
                  help="One row per cell with every metric as a column metric.<name>.")
    @click.option("--output", "-o", "output", type=click.Path(dir_okay=False), default=None,
                  help="Write to this file instead of standard output.")
    def export_cmd(run, fmt, output):
        """Export an audit's cells (output folder or results.json) as CSV or JSON Lines, ready for
        pandas.read_csv / pandas.read_json(lines=True). See docs/reports.md."""
        from dife_core.report.export import export
        from dife_core.report.load import load_run

        text = export(load_run(run), fmt)
        data = text.encode("utf-8", "backslashreplace")
        if output is None:
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return
        with open(output, "wb") as fh:
            fh.write(data)
        click.echo(f"wrote {len(text.splitlines()) - (fmt == 'csv')} cell row(s) to {output}", err=True)
