"""`dife build SPEC`: run attack recipes into DIFE checkpoints with attack cards.

The spec format is in docs/attacks.md; :mod:`dife_core.building` does the work.
"""

from __future__ import annotations

import json

import click

from dife_core import hookimpl
from dife_core.cli import apply_limits, limit_option, trust_option


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
    @trust_option
    @limit_option
    def build(spec, out, only, force, device, check, as_json, quiet, trusted, limits):
        """Build the poisoned checkpoints a TOML build SPEC names.

        Each [[attacks]] entry is built from the clean model on the world and
        written to OUT/<name> with its attack card. A build with the same
        attack, config, clean model, world and seed is reused, not rebuilt.
        """
        from pathlib import Path

        import attrs

        from dife_core.building import load_build_spec, rich_progress, run_build_spec
        from dife_core.errors import NotFoundError

        apply_limits(limits)
        check_build_values(spec)
        parsed = load_build_spec(spec)
        unknown = sorted(set(trusted) - {"clean"})
        if unknown:
            raise NotFoundError(f"--trust-checkpoint {', '.join(map(repr, unknown))}: a build spec loads one "
                                f"checkpoint, named 'clean' (its [clean] table).")
        if trusted and "checkpoint" not in parsed.clean:
            raise NotFoundError(f"--trust-checkpoint clean: {spec} loads no checkpoint file to trust (its [clean] "
                                f"is a recipe).")
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
                                  progress=None if quiet or as_json else rich_progress(), on_built=report,
                                  trusted=frozenset(trusted))
        if as_json:
            click.echo(json.dumps([{"name": o.name, "attack": o.attack, "path": str(o.path), "key": o.key,
                                    "reused": o.reused, "seconds": round(o.seconds, 2), "card": o.card}
                                   for o in outcomes], indent=2))


def check_build_values(path) -> None:
    """Refuse a build spec whose values are malformed or beyond the bounds
    (NaN, lone surrogates, deep nesting, step counts ...) or that asks for
    trust, before it is parsed for its meaning. One error lists them all."""
    from pathlib import Path

    from dife_core.engine.spec import option_problems, read_toml, spec_error, value_problems

    data = read_toml(Path(path), "build spec")
    problems = value_problems(data)
    if not problems and isinstance(data, dict):
        for sect in ("world", "clean"):
            if isinstance(data.get(sect), dict):
                problems += option_problems(data[sect].get("options") or {}, f"{sect}.options")
        for i, a in enumerate(data.get("attacks") or []):
            if isinstance(a, dict):
                problems += option_problems({k: v for k, v in a.items() if k != "attack"}, f"attacks[{i}]")
        if isinstance(data.get("build"), dict):
            problems += option_problems(data["build"], "build")
    if problems:
        err = spec_error(str(path), problems)
        raise type(err)(str(err).replace("in the audit spec", "in the build spec"))


def _f(v):
    return f"{v:.3f}" if isinstance(v, (int, float)) else "-"
