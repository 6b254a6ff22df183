"""`dife demo`: the embedded default audit, end to end."""

from __future__ import annotations

import click

from dife_core import hookimpl


@hookimpl
def register_commands(cli):
    @cli.command("demo")
    @click.option("--out", "out_dir", default="dife-demo", show_default=True, type=click.Path(file_okay=False),
                  help="Folder for results.json, report.md, report.html and the cell store.")
    @click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N (bf16 autocast on GPU).")
    @click.option("--suite", type=click.Choice(["default", "paper"]), default="default", show_default=True,
                  help="default: contrastive-poisoning + badtexttower; paper: the paper's six checkpoints.")
    @click.option("--preset", type=click.Choice(["default", "test"]), default="default", show_default=True,
                  help="World and clean recipe size (test: small and fast, for smoke tests).")
    @click.option("--seed", default=0, show_default=True, type=int, help="World, recipe and attack seed.")
    @click.option("--fresh", is_flag=True, help="Recompute every cell instead of reusing finished ones in --out.")
    @click.option("--no-progress", is_flag=True, help="No progress bars (the matrix is still printed).")
    def demo(out_dir, device, suite, preset, seed, fresh, no_progress):
        """Train (or reuse) the tiny clean CLIP, build the backdoored checkpoints, audit every
        interface with footprint diagnosis and controls, print the exposure matrix and write
        the reports."""
        from dife_core.demo import run_demo

        run_demo(out_dir, suite=suite, preset=preset, seed=seed, device=device, fresh=fresh,
                 progress=not no_progress)
        click.echo(f"report: {out_dir}/report.html")
