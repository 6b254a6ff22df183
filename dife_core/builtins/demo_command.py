"""`dife demo`: the embedded default audit, end to end."""

from __future__ import annotations

import click

from dife_core import hookimpl
from dife_core.cli import apply_limits, limit_option


@hookimpl
def register_commands(cli):
    @cli.command("demo")
    @click.option("--out", "out_dir", default="dife-demo", show_default=True, type=click.Path(file_okay=False),
                  help="Folder for results.json, report.md, report.html and the cell store.")
    @click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N (bf16 autocast on GPU).")
    @click.option("--suite", default="default", show_default=True, metavar="NAME",
                  help="A folder of examples/ with build.toml and audit.toml (default: contrastive-poisoning + "
                       "badtexttower; paper: the paper's six checkpoints).")
    @click.option("--preset", default="default", show_default=True, metavar="NAME",
                  help="Size variant: the sibling folder <suite>-<preset> (test: small and fast, for smoke tests).")
    @click.option("--seed", default=None, type=int,
                  help="Set every seed of the suite's specs (world, recipe, attacks).")
    @click.option("--seeds", default=None, metavar="S1,S2,...",
                  help="Audit the populations and trigger draws once per seed; report mean ± std (e.g. 0,1,2).")
    @click.option("--fresh", is_flag=True, help="Recompute every cell instead of reusing finished ones in --out.")
    @click.option("--no-progress", is_flag=True, help="No progress bars (the matrix is still printed).")
    @click.option("--force", is_flag=True,
                  help="Write into --out even when it is a non-empty folder that is not a DIFE output folder.")
    @limit_option
    def demo(out_dir, device, suite, preset, seed, seeds, fresh, no_progress, force, limits):
        """Train (or reuse) the tiny clean CLIP, build the backdoored checkpoints, audit every
        interface with footprint diagnosis and controls, print the exposure matrix and write
        the reports."""
        from pathlib import Path

        from dife_core.demo import demo_spec
        from dife_core.engine import run_audit
        from dife_core.outdir import check_out_dir, is_dife_folder

        apply_limits(limits)
        out = Path(out_dir)
        # re-running reuses the finished cells in --out (resume); --fresh replaces the demo's own audit
        resume = not fresh and out.exists()
        force = force or (fresh and is_dife_folder(out))
        check_out_dir(out, resume=resume, force=force)  # refuse before the builds, not after
        seed_list = None
        if seeds:
            try:
                seed_list = [int(x) for x in seeds.split(",") if x.strip()]
            except ValueError:
                raise click.BadParameter(f"{seeds!r} is not a comma-separated list of integers",
                                         param_hint="--seeds") from None
        spec = demo_spec(suite=suite, preset=preset, seed=seed, device=device, progress=not no_progress)
        if seed_list:
            spec.pop("seed", None)
            spec["seeds"] = seed_list
        run_audit(spec, out, resume=resume, force=force, progress=not no_progress, show_matrix=True)
        click.echo(f"report: {out_dir}/report.html")
