"""``dife inspect CHECKPOINT``: what a checkpoint is and whether it is safe to load.

Reports the format, loader, architecture, parameter count and fingerprint per
branch, the manifest and attack card when present, and the safety verdict.
Exit 0: loadable; 3: refused as unsafe (loading would run code); 2: malformed
or not found. Nothing is imported from torch until the command runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from dife_core import hookimpl

#: verdicts
SAFE, TRUSTED, REFUSED, MALFORMED = "safe", "trusted", "refused", "malformed"


def _parse_options(pairs) -> dict:
    from dife_core.errors import InvalidInputError

    out = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"--option expects KEY=VALUE, got {item!r}.")
        low = value.lower()
        out[key.replace("-", "_")] = True if low == "true" else False if low == "false" else value
    return out


def _weight_files(source: str) -> list:
    """Weight files a source points at on disk (for the static safety look)."""
    from dife_core.safeload import PICKLE_SUFFIXES, SAFETENSORS_SUFFIXES

    p = Path(source.split(":", 1)[1] if source.startswith("local-dir:") else source)
    if p.is_file():
        return [p] if p.suffix.lower() != ".json" else []
    if p.is_dir():
        return sorted(f for f in p.iterdir()
                      if f.is_file() and f.suffix.lower() in SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES)
    return []


def _describe(source: str, keys=None) -> dict:
    """What the loaders say about ``source`` (their optional ``describe``), highest
    priority first; the core knows no loader's file or key names."""
    from dife_core.loading import _priority
    from dife_core.plugins import get_registry

    loaders = sorted(get_registry().all("model_loaders").values(), key=lambda ld: (-_priority(ld), ld.name))
    for ld in loaders:
        if ld.describe is None:
            continue
        try:
            d = ld.describe(source, keys)
        except Exception:  # a loader's describe must not break inspect
            d = None
        if isinstance(d, dict):
            return {**d, "loader": ld.name}
    return {}


def _format_of(source: str) -> str:
    from dife_core.checkpoint import is_checkpoint
    from dife_core.safeload import weight_format

    p = Path(source)
    if is_checkpoint(p):
        return "dife-checkpoint"
    described = _describe(source).get("format")
    if described:
        return str(described)
    if p.is_dir():
        return "folder"
    if p.is_file():
        return weight_format(p)
    return "named"


def _static_safety(files: list) -> list:
    """Per weight file: what it is and what a look without loading found."""
    from dife_core.errors import DifeError
    from dife_core.safeload import scan_pickle, validate_safetensors, weight_format

    out = []
    for f in files:
        rec = {"file": str(f)}
        try:
            fmt = weight_format(f)
            rec["format"] = fmt
            if fmt == "safetensors":
                h = validate_safetensors(f)
                rec.update(tensors=len(h.tensors), pickle=False, note="safetensors header checked; no code can run")
            elif fmt == "torchscript":
                rec.update(pickle=True, torchscript=True,
                           note="TorchScript archive (torch.jit.save): parameters are read from its data records "
                                "without compiling or running its code")
            elif fmt in ("torch-zip", "legacy-pickle"):
                scan = scan_pickle(f)
                rec.update(pickle=True, globals=list(scan.globals), suspicious_globals=list(scan.suspicious))
            else:
                rec.update(note="unrecognised file")
        except DifeError as e:
            rec.update(error=str(e), exit_code=e.exit_code)
        out.append(rec)
    return out


def _branch_rule(described: dict):
    """``key -> "visual" | "text" | None`` from a loader's description of the key layout."""
    vis = tuple(described.get("visual_prefixes") or ())
    txt = tuple(described.get("text_prefixes") or ())
    skip = tuple(described.get("exclude_suffixes") or ())

    def branch(key: str):
        if skip and key.endswith(skip):
            return None
        if vis and key.startswith(vis):
            return "visual"
        if txt:
            return "text" if key.startswith(txt) else None
        return "text" if vis else None
    return branch


def _state_dict_report(source: str, *, trust: bool) -> dict:
    """For a weight file whose architecture is unknown: what the tensors say.
    The tensors were checked (view strides, sizes) before anything is hashed."""
    from dife_core.model import _hash_tensors
    from dife_core.safeload import load_state_dict

    sd = load_state_dict(source, trust=trust)
    described = _describe(source, sorted(sd))
    branch_of = _branch_rule(described)
    branches = {"visual": {}, "text": {}}
    for k, v in sd.items():
        b = branch_of(k)
        if b:
            branches[b][k] = v
    return {
        "tensors": len(sd),
        "parameters": {"total": sum(v.numel() for v in sd.values()),
                       **{b: sum(v.numel() for v in t.values()) for b, t in branches.items()}},
        "fingerprint": {b: _hash_tensors(t.items()) for b, t in branches.items()},
        "note": "architecture unknown: tensors read safely but no model was built; "
                "pass --loader and --option architecture=... to build it",
    }


def inspect_source(source: str, *, loader: str = "auto", trust: bool = False, options: dict | None = None) -> tuple:
    """The inspect record for ``source`` and the exit code (0, 2 or 3)."""
    import warnings

    from dife_core.errors import DifeError, UnsafeCheckpointError
    from dife_core.loading import ArchitectureUnknownError, load_model
    from dife_core.safeload import collect_nonfinite

    options = dict(options or {})
    rec: dict = {"source": source, "format": None, "loader": None, "verdict": None, "findings": []}
    try:
        rec["format"] = _format_of(source)
        rec["files"] = _static_safety(_weight_files(source))
    except DifeError as e:
        rec.update(verdict=MALFORMED, error=str(e))
        return _with_findings(rec), 2
    caught: list = []
    nonfinite: list = []
    try:
        with warnings.catch_warnings(record=True) as caught, collect_nonfinite() as nonfinite:
            warnings.simplefilter("always")
            try:
                enc = load_model(source, loader=loader, trust=trust, **options)
            except ArchitectureUnknownError as e:
                rec["state_dict"] = _state_dict_report(source, trust=trust)
                rec["architecture_error"] = str(e)
                enc = None
    except UnsafeCheckpointError as e:
        rec.update(verdict=REFUSED, error=str(e))
        return _with_findings(rec), e.exit_code
    except DifeError as e:
        rec.update(verdict=MALFORMED, error=str(e))
        return _with_findings(rec), e.exit_code
    except (KeyboardInterrupt, GeneratorExit):
        raise
    except BaseException as e:  # noqa: B036 -- a plugin's SystemExit, a Rust panic: never "exit 0, no output"
        rec.update(verdict=MALFORMED, error=f"{source}: loading failed unexpectedly ({type(e).__name__}: "
                                            f"{str(e)[:200]}); nothing is reported as safe.")
        return _with_findings(rec), 2
    trust_warnings = [str(w.message) for w in caught if type(w.message).__name__ == "TrustWarning"]
    other = [str(w.message) for w in caught if type(w.message).__name__ != "TrustWarning"]
    rec["verdict"] = TRUSTED if trust_warnings else SAFE
    if trust_warnings:
        rec["trust_warnings"] = trust_warnings
    if other:
        rec["warnings"] = sorted(set(other))[:10]
    if enc is not None:
        rec.update(_encoder_report(enc))
    code = 0
    if nonfinite:
        # weights that would make every figure meaningless: reported in full, and not loadable for an audit
        rec["nonfinite"] = nonfinite
        first = nonfinite[0]
        rec.update(verdict=MALFORMED, error=(
            f"{first['file']}: tensor {first['tensor']!r} holds non-finite values ({first['nan']} NaN, "
            f"{first['inf']} Inf)" + (f" and {len(nonfinite) - 1} more tensor(s)" if len(nonfinite) > 1 else "")
            + "; an audit refuses these weights."))
        code = 2
    return _with_findings(rec), code


def _with_findings(rec: dict) -> dict:
    """Every trust- and resource-related finding as one list of ``{"kind", "message"}``."""
    findings = rec.setdefault("findings", [])
    for f in rec.get("files", []):
        if f.get("suspicious_globals"):
            findings.append({"kind": "trust", "message": f"{f['file']}: pickle needs globals "
                             + ", ".join(f["suspicious_globals"]) + " (code would run to load it)"})
        if f.get("torchscript"):
            findings.append({"kind": "format", "message": f"{f['file']}: {f['note']}"})
        if f.get("error"):
            findings.append({"kind": "malformed", "message": f["error"]})
    for w in rec.get("trust_warnings", []):
        findings.append({"kind": "trust", "message": w})
    for n in rec.get("nonfinite", []):
        findings.append({"kind": "non-finite", "message": f"{n['file']}: tensor {n['tensor']!r} holds {n['nan']} NaN "
                                                          f"and {n['inf']} Inf values"})
    err = rec.get("error")
    if err and not any(x["message"] == err for x in findings):
        kind = "trust" if rec.get("verdict") == REFUSED else (
            "resource" if ("limit " in err or "bound" in err or "larger than its weights" in err) else "malformed")
        findings.append({"kind": kind, "message": err})
    return rec


def _encoder_report(enc) -> dict:
    manifest = getattr(enc, "manifest", None)
    out = {
        "name": enc.name,
        "loader": enc.loader,
        "architecture": enc.architecture,
        "preprocess": enc.preprocess.to_dict(),
        "dtype": str(enc.dtype).replace("torch.", ""),
        "logit_scale": round(enc.logit_scale, 6),
        "parameters": {"total": enc.param_count(), "visual": enc.param_count("visual"),
                       "text": enc.param_count("text")},
        "tensors": {"visual": len(enc.visual_param_names), "text": len(enc.text_param_names)},
        "fingerprint": enc.fingerprint(),
    }
    notes = getattr(enc, "notes", None)
    if notes:
        out["notes"] = list(notes)
    if manifest is not None:
        out["manifest"] = manifest
        out["attack"] = manifest.get("attack")
    return out


def _print_text(rec: dict) -> None:
    def line(label, value):
        click.echo(f"{label:<14}{value}")

    line("source", rec["source"])
    line("format", rec.get("format"))
    for f in rec.get("files", []):
        desc = f.get("format", "?")
        if f.get("suspicious_globals"):
            desc += "; needs globals " + ", ".join(f["suspicious_globals"])
        elif f.get("torchscript"):
            desc += "; parameters read without running its code"
        elif f.get("pickle"):
            desc += "; pickle (weights_only)"
        line("  file", f"{f['file']} [{desc}]")
    verdict = rec["verdict"]
    line("verdict", verdict + (f": {rec['error']}" if rec.get("error") else ""))
    for f in rec.get("findings", []):
        if f["message"] != rec.get("error"):
            line("finding", f"[{f['kind']}] {f['message']}")
    if verdict in (REFUSED, MALFORMED):
        return
    if "state_dict" in rec:
        sd = rec["state_dict"]
        line("tensors", sd["tensors"])
        p = sd["parameters"]
        line("parameters", f"{p['total']:,} (visual {p['visual']:,}, text {p['text']:,})")
        line("fingerprint", f"visual {sd['fingerprint']['visual']}  text {sd['fingerprint']['text']}")
        line("note", sd["note"])
        return
    line("name", rec["name"])
    line("loader", rec["loader"])
    arch = rec["architecture"]
    line("architecture", arch.get("model_name") or arch.get("family") or json.dumps(arch, sort_keys=True)[:100])
    p = rec["parameters"]
    line("parameters", f"{p['total']:,} (visual {p['visual']:,}, text {p['text']:,})")
    line("fingerprint", f"visual {rec['fingerprint']['visual']}  text {rec['fingerprint']['text']}")
    line("logit scale", rec["logit_scale"])
    pp = rec["preprocess"]
    line("preprocess", f"{pp['image_size']}px {pp['resize_mode']} {pp['interpolation']}")
    for n in rec.get("notes", []):
        line("note", n)
    for w in rec.get("trust_warnings", []):
        line("WARNING", w)
    if "manifest" in rec:
        line("attack", json.dumps(rec["attack"], sort_keys=True) if rec["attack"] else "none (clean)")


@hookimpl
def register_commands(cli):
    @cli.command("inspect")
    @click.argument("checkpoint")
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    @click.option("--loader", default="auto", show_default=True, help="Model loader to use (see `dife list-plugins`).")
    @click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
                  help="Loader option, e.g. architecture=ViT-B-32 or pretrained=FILE (repeatable).")
    @click.option("--trust-checkpoint", is_flag=True,
                  help="Load pickles that need globals beyond torch's weights_only allowlist. Runs code from the file.")
    def inspect(checkpoint: str, as_json: bool, loader: str, options: tuple, trust_checkpoint: bool):
        """Describe CHECKPOINT: format, loader, architecture, parameters and fingerprint
        per branch, manifest and attack card, and the safety verdict.

        Exit 0 when it is loadable, 3 when it is refused as unsafe, 2 when it is malformed.
        """
        rec, code = inspect_source(checkpoint, loader=loader, trust=trust_checkpoint,
                                   options=_parse_options(options))
        if as_json:
            click.echo(json.dumps(rec, indent=2, sort_keys=True, default=str))
        else:
            _print_text(rec)
        if rec.get("error"):
            click.echo(f"Error: {rec['error']}", err=True)
        if code:
            sys.exit(code)
