"""`dife audit`, `dife report`, `dife validate` (the engine's commands).

The engine is imported inside each command, so `dife --help` stays light.
"""

from __future__ import annotations

import click

from dife_core import hookimpl
from dife_core.cli import apply_limits, limit_option, trust_option


@hookimpl
def register_commands(cli):
    @cli.command("audit")
    @click.argument("spec", type=click.Path(dir_okay=False))
    @click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
                  help="Output folder: results.json, spec.toml, report.md, report.html and the cell store.")
    @click.option("--resume", is_flag=True, help="Keep finished cells whose inputs are unchanged; compute the rest.")
    @click.option("--device", default=None, help="Override the spec's device (cpu, cuda, cuda:N).")
    @click.option("--no-progress", is_flag=True, help="No progress bars and no terminal table.")
    @click.option("--force", is_flag=True,
                  help="Replace a previous audit in --out without --resume, or write into a non-empty folder "
                       "that is not a DIFE output folder.")
    @click.option("--fail-on", "fail_on", default=None, metavar="WHAT",
                  help="Exit non-zero for CI: exposed, weak, error or any (comma-separated); codes in "
                       "docs/reports.md.")
    @click.option("--executor", type=click.Choice(["local", "ray"]), default=None,
                  help="Where the work runs: local (this process; the default) or ray (Ray tasks, one per "
                       "checkpoint and seed; pip install 'dife[ray]'). Overrides the spec's executor. "
                       "See docs/scale-out.md.")
    @click.option("--ray-address", "ray_address", default=None, metavar="ADDRESS",
                  help="An existing Ray cluster (head node host:port, or auto); default: a local cluster "
                       "started for this audit. Implies --executor ray.")
    @click.option("--ray-weights", "ray_weights", type=click.Choice(["object-store", "path"]), default=None,
                  help="How Ray tasks get their checkpoints: object-store (the driver's loaded copy, put "
                       "once; the default) or path (each task loads the spec's source path).")
    @trust_option
    @limit_option
    def audit(spec, out_dir, resume, device, no_progress, force, fail_on, executor, ray_address, ray_weights,
              trusted, limits):
        """Audit the checkpoints of SPEC (a TOML audit spec; see docs/spec.md)."""
        from dife_core.engine import load_spec, run_audit
        from dife_core.engine.verdicts import exit_code_for

        if fail_on is not None:
            try:
                exit_code_for({"cells": [], "checkpoints": [], "footprints": []}, fail_on)
            except ValueError as e:
                raise click.BadParameter(str(e), param_hint="--fail-on") from None

        apply_limits(limits)
        if ray_address is not None and executor == "local":
            raise click.BadParameter("--ray-address needs --executor ray", param_hint="--ray-address")
        if ray_weights is not None and executor == "local":
            raise click.BadParameter("--ray-weights needs --executor ray", param_hint="--ray-weights")
        results = run_audit(load_spec(spec), out_dir, resume=resume, progress=not no_progress, device=device,
                            trusted=frozenset(trusted), force=force,
                            executor="ray" if ray_address is not None or ray_weights is not None else executor,
                            ray_address=ray_address, ray_weights=ray_weights)
        if no_progress:
            n = len(results["cells"])
            click.echo(f"{n} cells audited; reports in {out_dir}")
        if not results.get("complete", True):
            raise SystemExit(1)
        if fail_on is not None:
            code = exit_code_for(results, fail_on)
            if code:
                raise SystemExit(code)

    @cli.command("report")
    @click.argument("out_dir", type=click.Path(file_okay=False))
    @click.option("--quiet", is_flag=True, help="Do not print the exposure matrix.")
    def report(out_dir, quiet):
        """Re-render results.json, report.md and report.html from OUT_DIR's stored records."""
        from dife_core.engine import render_reports
        from dife_core.report import print_matrix

        results = render_reports(out_dir)
        if not quiet:
            print_matrix(results)
        click.echo(f"wrote {out_dir}/results.json, report.md, report.html")

    @cli.command("validate")
    @click.argument("spec", type=click.Path(dir_okay=False))
    @limit_option
    def validate(spec, limits):
        """Check an audit spec without running it; list every problem with its key
        (trust in the spec, values beyond the bounds, unknown names)."""
        from dife_core.engine.spec import load_spec, spec_error, validate_spec

        apply_limits(limits)
        parsed = load_spec(spec)  # structural problems raise here, all listed
        problems = validate_spec(parsed)
        if problems:
            raise spec_error(spec, problems)
        ifaces = _interface_count(parsed)
        from dife_core.safetext import terminal

        click.echo(terminal(f"{spec}: OK — {len(parsed.checkpoints)} checkpoint(s)"
                   f"{', clean reference ' + repr(parsed.clean.name) if parsed.clean else ', no clean reference'}, "
                   f"{ifaces} interface(s), dataset {parsed.populations.dataset!r}."))


def _interface_count(spec) -> int:
    from dife_core.plugins import get_registry

    return len(spec.interface_ids(get_registry().all("interfaces")))
