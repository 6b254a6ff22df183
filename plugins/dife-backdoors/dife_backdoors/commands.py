"""`dife toxictextclip-stress`: the paper's ToxicTextCLIP stress test from the command line.

Registered through ``register_commands``; click is imported here, torch only
when the command runs.
"""

from __future__ import annotations

import click


def _floats(text: str, option: str) -> list:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}", param_hint=option) from err
    if not values:
        raise click.BadParameter("give at least one value", param_hint=option)
    return values


def stress_table(result: dict) -> list:
    """Markdown rows (header first) of a :func:`dife_backdoors.toxictextclip.stress_test` result."""

    def f(v, signed=False):
        return "n/a" if v is None else (f"{v:+.3f}" if signed else f"{v:.3f}")

    rows = ["| variant | poison rate | epochs | native Hit@5 (clean model) | clean acc | rerank ΔH@1 | "
            "targeted retrieval ΔH@1 | build |",
            "|---|---|---|---|---|---|---|---|"]
    for r in result["records"]:
        best = " (best)" if r["name"] == result["best"]["name"] else ""
        how = "reused" if r["reused"] else f"{r['seconds']:.0f} s"
        rows.append(f"| `{r['name']}`{best} | {r['poison_rate']:g} | {r['epochs']:g} | "
                    f"{f(r['native_value'])} ({f(r['native_reference_value'])}) | {f(r['clean_acc'])} | "
                    f"{f(r.get('rerank_delta_h@1'), True)} | {f(r.get('retrieval_delta_h@1'), True)} | {how} |")
    return rows


def register(cli):
    @cli.command("toxictextclip-stress")
    @click.option("--preset", default="default", show_default=True, help="shapes world preset and clean recipe.")
    @click.option("--seed", default=0, show_default=True, type=int)
    @click.option("--rates", default="0.01,0.02", show_default=True, help="poison rates to sweep (comma-separated).")
    @click.option("--epochs", default="1,2", show_default=True, help="epochs to sweep (comma-separated).")
    @click.option("--out", type=click.Path(file_okay=False), default=None,
                  help="Folder for the variants' checkpoints (default: the build cache).")
    @click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
    @click.option("--quiet", is_flag=True, help="No progress bars.")
    def toxictextclip_stress(preset, seed, rates, epochs, out, as_json, quiet):
        """ToxicTextCLIP stress test: build every (poison rate x epochs) variant on the embedded
        world, measure its native Hit@5 and its deployment deltas (text reranking, targeted
        retrieval), and mark the native-best variant."""
        import json

        from dife_core.building import rich_progress
        from dife_core.loading import load_model
        from dife_core.plugins import get_registry

        from .toxictextclip import stress_test

        rate_list, epoch_list = _floats(rates, "--rates"), _floats(epochs, "--epochs")
        reg = get_registry()
        world = reg.get("datasets", "shapes").load(preset=preset, seed=seed)
        clean = load_model(preset, loader="shapes-recipe", seed=seed, progress=not quiet)
        result = stress_test(clean, world, poison_rates=rate_list, epochs=epoch_list, seed=seed, out=out,
                             progress=None if quiet else rich_progress())
        if as_json:
            click.echo(json.dumps(result, indent=2, sort_keys=True))
        else:
            click.echo("\n".join(stress_table(result)))
