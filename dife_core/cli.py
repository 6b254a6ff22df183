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
        from .plugins import _strict, _warn, get_registry

        reg = get_registry()
        # one plugin at a time: a plugin whose commands fail to register (even with SystemExit)
        # is reported and the other commands still work
        for impl in reversed(reg.pm.hook.register_commands.get_hookimpls()):  # pluggy's call order
            name = reg.pm.get_name(impl.plugin)
            info = reg.infos.get(name)
            try:
                impl.function(cli=cli)
            except KeyboardInterrupt:
                raise
            except BaseException as e:  # noqa: B036
                if _strict() or (info is not None and info.builtin):
                    raise
                if info is not None:
                    info.error = f"{type(e).__name__} in register_commands"
                _warn(f"plugin {name}: {type(e).__name__} in register_commands; its commands are unavailable")
    return cli


# -- options shared by the commands that read untrusted files -------------------------

def limit_option(f):
    """``--limit KEY=VALUE`` (repeatable): raise one of the documented bounds
    on what a file may ask for, for this command only."""
    return click.option("--limit", "limits", multiple=True, metavar="KEY=VALUE",
                        help="Raise a bound on what a file may ask for, e.g. --limit steps=500000 (repeatable; "
                             "the bounds are listed in docs/security.md).")(f)


def trust_option(f):
    """``--trust-checkpoint NAME`` (repeatable): trust comes only from the command line."""
    return click.option("--trust-checkpoint", "trusted", multiple=True, metavar="NAME",
                        help="Trust the checkpoint NAME of the spec: allow pickle globals beyond torch's safe "
                             "allow-list when loading it (repeatable). A spec file can never grant trust.")(f)


def apply_limits(items) -> None:
    """Apply ``--limit`` values to the process-wide bounds (dife_core.untrusted)."""
    if not items:
        return
    from .builtins import datasets as _datasets  # noqa: F401 -- registers the dataset bounds
    from .engine import spec as _spec  # noqa: F401 -- registers the spec and card bounds
    from .plugins import get_registry
    from .untrusted import parse_limit, set_limits

    get_registry().all("triggers")  # trigger families register their bounds at import
    set_limits(**dict(parse_limit(item) for item in items))


def _safe(text: str) -> str:
    try:
        from .safetext import terminal
    except Exception:  # noqa: BLE001 -- the error path must never fail
        return text.encode("ascii", "backslashreplace").decode("ascii")
    return terminal(text)


def _report(err: BaseException) -> int:
    code = getattr(err, "exit_code", 1)
    if not isinstance(code, int) or isinstance(code, bool):
        code = 1
    try:
        text = str(err) or type(err).__name__
    except Exception:  # noqa: BLE001 -- a hostile __str__
        text = type(err).__name__
    # untrusted names end up in messages: escape controls before they reach the terminal
    para = textwrap.fill(_safe(" ".join(text.split())), width=100, break_on_hyphens=False,
                         break_long_words=False)
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
    except RecursionError:  # a hostile input nested too deeply past a reader's checks
        if debug:
            raise
        _report(RuntimeError("an input is nested too deeply to read (RecursionError); it was refused"))
        sys.exit(2)
    except Exception as e:  # unexpected: still one paragraph unless --debug
        if debug:
            raise
        _report(RuntimeError(f"{type(e).__name__}: {_short(e)} (run with --debug for the traceback)"))
        sys.exit(1)
    except SystemExit as e:
        # DIFE's own commands exit through click or with a non-zero code; a SystemExit(0 / None / text)
        # inside a command comes from plugin or library code and must never read as success
        if isinstance(e.code, int) and not isinstance(e.code, bool) and e.code != 0:
            raise
        if debug:
            raise
        _report(RuntimeError(f"plugin or library code tried to end DIFE early (SystemExit({_short_code(e.code)})); "
                             f"the command did not complete"))
        sys.exit(1)
    except BaseException as e:  # noqa: B036 -- e.g. a Rust PanicException from a tokenizer: not an Exception
        if debug:
            raise
        _report(RuntimeError(f"{type(e).__name__}: {_short(e)} (a library failed hard; run with --debug for the "
                             f"traceback)"))
        sys.exit(1)


def _short_code(code) -> str:
    text = repr(code)
    return _safe(text if len(text) <= 80 else text[:80] + "...")


def _short(e: BaseException) -> str:
    try:
        text = " ".join(str(e).split())
    except Exception:  # noqa: BLE001
        return "(no message)"
    return text if len(text) <= 500 else text[:500] + "..."
