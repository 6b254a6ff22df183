"""The ``dife`` command line.

Commands come from the ``register_commands`` hook, built-ins included
(``dife_core.builtins.commands``). Errors become one paragraph on stderr and a
non-zero exit code; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
import textwrap

import click

from . import __version__
from .errors import DifeError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dife")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """DIFE audits CLIP checkpoints for backdoor exposure across deployment interfaces."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if debug:
        os.environ["DIFE_DEBUG"] = "1"


_built = False


def build_cli() -> click.Group:
    """Let every plugin add its commands (once)."""
    global _built
    if not _built:
        _built = True
        from .plugins import get_registry

        get_registry().pm.hook.register_commands(cli=cli)
    return cli


def _report(err: BaseException) -> int:
    code = getattr(err, "exit_code", 1)
    text = str(err) or type(err).__name__
    para = textwrap.fill(" ".join(text.split()), width=100)
    click.echo(f"Error: {para}", err=True)
    return code


def main(argv=None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:]) or os.environ.get("DIFE_DEBUG") == "1"
    try:
        group = build_cli()
        rv = group.main(args=argv, prog_name="dife", standalone_mode=False)
        # without standalone mode click *returns* the code of a click.exceptions.Exit
        if isinstance(rv, int) and rv:
            sys.exit(rv)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except DifeError as e:
        if debug:
            raise
        sys.exit(_report(e))
    except Exception as e:  # unexpected: still one paragraph unless --debug
        if debug:
            raise
        _report(RuntimeError(f"{type(e).__name__}: {e} (run with --debug for the traceback)"))
        sys.exit(1)
