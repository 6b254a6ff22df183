"""`dife build SPEC`: run attack recipes into DIFE checkpoints with attack cards.

The spec format is in docs/attacks.md; :mod:`dife_core.building` does the work.
"""

from __future__ import annotations

import json

import click

from dife_core import hookimpl


@hookimpl
def register_commands(cli):
    @cli.command("build")
    @click.argument("spec", type=click.Path(dir_okay=False))
    @click.option("--out", "out", type=click.Path(file_okay=False), default=None,
                  help="Checkpoint folder (overrides [build] out).")
    @click.option("--only", multiple=True, metavar="NAME", help="Build only this checkpoint (repeatable).")
    @click.option("--force", is_flag=True, default=None, help="Rebuild even when an identical build exists.")
    @click.option("--device", default=None, help="cpu, cuda or cuda:N (overrides [build] device).")
    @click.option("--check", is_flag=True, help="Validate the spec and exit without building.")
    @click.option("--json", "as_json", is_flag=True, help="Print the outcomes as JSON.")
    @click.option("--quiet", is_flag=True, help="No progress bars.")
    def build(spec, out, only, force, device, check, as_json, quiet):
        """Build the poisoned checkpoints a TOML build SPEC names.

        Each [[attacks]] entry is built from the clean model on the world and
        written to OUT/<name> with its attack card. A build with the same
        attack, config, clean model, world and seed is reused, not rebuilt.
        """
        from pathlib import Path

        import attrs

        from dife_core.building import load_build_spec, rich_progress, run_build_spec

        parsed = load_build_spec(spec)
        if out:
            parsed = attrs.evolve(parsed, out=Path(out).resolve())
        if check:
            click.echo(f"{spec}: ok ({len(parsed.attacks)} attack(s): "
                       f"{', '.join(e.name for e in parsed.attacks)}; out {parsed.out})")
            return

        def report(o):
            if as_json:
                return
            n = o.card.get("native") or {}
            cu = o.card.get("clean_utility") or {}
            how = "reused" if o.reused else f"built in {o.seconds:.0f}s"
            click.echo(f"{o.name}: {how} -> {o.path}  native {n.get('metric')} {_f(n.get('value'))} "
                       f"(clean {_f(n.get('reference_value'))}), clean acc {_f(cu.get('clean_acc'))} "
                       f"(clean {_f(cu.get('reference_clean_acc'))})", err=False)

        outcomes = run_build_spec(parsed, only=only or None, force=force, device=device,
                                  progress=None if quiet or as_json else rich_progress(), on_built=report)
        if as_json:
            click.echo(json.dumps([{"name": o.name, "attack": o.attack, "path": str(o.path), "key": o.key,
                                    "reused": o.reused, "seconds": round(o.seconds, 2), "card": o.card}
                                   for o in outcomes], indent=2))


def _f(v):
    return f"{v:.3f}" if isinstance(v, (int, float)) else "-"
