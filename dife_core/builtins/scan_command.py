"""`dife scan CHECKPOINT --reference BASE --out DIR`: find a backdoor nobody
described, then audit it (docs/scan.md). The work is in :mod:`dife_core.scan`."""

from __future__ import annotations

import click

from dife_core import hookimpl
from dife_core.cli import apply_limits, limit_option


@hookimpl
def register_commands(cli):
    @cli.command("scan")
    @click.argument("checkpoint")
    @click.option("--reference", required=True, help="The clean upstream model the suspect derives from.")
    @click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
                  help="Output folder: scans.json, results.json, report.md, report.html and the cell store.")
    @click.option("--dataset", default="shapes", show_default=True, help="Registered dataset giving the world.")
    @click.option("--dataset-option", "dataset_options", multiple=True, metavar="KEY=VALUE",
                  help="Option of the dataset (repeatable), e.g. preset=default.")
    @click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
                  help="Scan option (repeatable): a scan-wide key, or SCANNER.KEY (docs/scan.md).")
    @click.option("--null", "nulls", multiple=True, metavar="CHECKPOINT",
                  help="A clean checkpoint scanned as a suspect too, for the false-positive rate (repeatable).")
    @click.option("--loader", default="auto", show_default=True, help="Loader of the suspect.")
    @click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
    @click.option("--seed", default=0, show_default=True, type=int)
    @click.option("--resume", is_flag=True, help="Reuse a finished scan and finished audit cells in --out.")
    @click.option("--force", is_flag=True, help="Replace a previous scan or audit in --out.")
    @click.option("--no-progress", is_flag=True, help="No progress bars and no terminal table.")
    @limit_option
    def scan(checkpoint, reference, out_dir, dataset, dataset_options, options, nulls, loader, device, seed,
             resume, force, no_progress, limits):
        """Scan CHECKPOINT for a backdoor against --reference, then audit what was found."""
        import textwrap

        from dife_core.safetext import terminal
        from dife_core.scan import parse_options, run_scan

        apply_limits(limits)
        results = run_scan(checkpoint, reference, out_dir, dataset=dataset,
                           dataset_options=parse_options(dataset_options), options=parse_options(options),
                           nulls=nulls, device=device, resume=resume, force=force, progress=not no_progress,
                           loader=loader, seed=seed)
        for s in results.get("scans", []):
            rec = s.get("recovered") or []
            trig = ""
            if rec:
                t = rec[0].get("trigger") or {}
                tok = (t.get("params") or {}).get("token")
                trig = f", trigger {t.get('name')}" + (f" {tok!r}" if tok else "")
            line = (f"{s['checkpoint']}: {s['verdict']} (score {s['score']:.3f}, threshold {s['threshold']:.3f}, "
                    f"{s.get('statistic')}); target {s.get('target')}{trig}; {s['tower_diff']['summary']}")
            click.echo(textwrap.fill(terminal(line), 80, subsequent_indent="  "))
            if s.get("why"):
                click.echo(textwrap.fill(terminal(f"why: {s['why']}"), 80, initial_indent="  ",
                                         subsequent_indent="    "))
        click.echo(f"reports in {out_dir}")
