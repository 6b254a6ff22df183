"""``dife cache ls|du|prune``: the persistent embedding store (docs/scale.md).

``ls`` lists stored feature sets (tower, population, trigger, rows, size,
last use); ``du`` sums their size per tower; ``prune`` removes entries unused
for ``--older-than`` days (or all with ``--all``), broken entries, and temp
files left by writers that died mid-write. ``--store DIR`` picks a store
other than ``$DIFE_CACHE_DIR/embeddings``.
"""

from __future__ import annotations

import json
import time

import click

from dife_core import hookimpl


def _store(path):
    from dife_core.embedstore import EmbeddingStore, default_root

    return EmbeddingStore(path or default_root())


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _short(tower: str) -> str:
    # "OpenClipEncoder:<fingerprint>:<preprocessing>" -> class and the first characters of the fingerprint
    parts = str(tower).split(":")
    return f"{parts[0]}:{parts[1][:12]}" if len(parts) > 1 else str(tower)[:40]


store_option = click.option("--store", "store_dir", default=None, type=click.Path(file_okay=False),
                            help="Store folder (default: $DIFE_CACHE_DIR/embeddings).")


@hookimpl
def register_commands(cli):
    @cli.group("cache")
    def cache():
        """The persistent embedding store: list, size and prune stored features."""

    @cache.command("ls")
    @store_option
    @click.option("--json", "as_json", is_flag=True, help="One JSON record per entry.")
    def ls(store_dir, as_json):
        """List stored feature sets."""
        from dife_core.safetext import json_dumps, terminal

        entries = _store(store_dir).entries()
        if as_json:
            click.echo(json_dumps(entries, indent=2, sort_keys=True))
            return
        if not entries:
            click.echo(f"No stored features in {terminal(str(_store(store_dir).root))}.")
            return
        now = time.time()
        for e in entries:
            if e.get("broken"):
                click.echo(f"{terminal(e['path'])}  BROKEN ({_size(e['bytes'])}; `dife cache prune` removes it)")
                continue
            name = (e.get("info") or {}).get("name") or e.get("population", "?")
            click.echo(f"{_short(e.get('tower', '?')):<30} {e.get('branch', '?'):<6} {terminal(name)[:48]:<48} "
                       f"{terminal(e.get('trigger', '?'))[:32]:<32} {e.get('rows', 0):>8} x {e.get('dim', 0):<5}"
                       f"{_size(e['bytes']):>10}  used {(now - e['used']) / 86400:.1f} d ago")

    @cache.command("du")
    @store_option
    @click.option("--json", "as_json", is_flag=True, help="Print the totals as JSON.")
    def du(store_dir, as_json):
        """Disk use of the store, per tower and in total."""
        from dife_core.safetext import terminal

        st = _store(store_dir)
        entries = st.entries()
        per: dict = {}
        for e in entries:
            key = f"{_short(e.get('tower', 'broken'))} {e.get('branch', '')}".strip()
            n, b = per.get(key, (0, 0))
            per[key] = (n + 1, b + e["bytes"])
        temp = sum(t.stat().st_size for t in st.temp_files())
        total = sum(e["bytes"] for e in entries)
        if as_json:
            click.echo(json.dumps({"root": str(st.root), "entries": len(entries), "bytes": total,
                                   "temp_bytes": temp, "towers": {k: {"entries": n, "bytes": b}
                                                                  for k, (n, b) in sorted(per.items())}},
                                  indent=2, sort_keys=True))
            return
        for k, (n, b) in sorted(per.items()):
            click.echo(f"{_size(b):>10}  {n:>5} entries  {terminal(k)}")
        click.echo(f"{_size(total):>10}  {len(entries):>5} entries  total in {terminal(str(st.root))}"
                   + (f" (+ {_size(temp)} of temp files)" if temp else ""))

    @cache.command("prune")
    @store_option
    @click.option("--older-than", "older_than", type=click.FloatRange(min=0), default=None, metavar="DAYS",
                  help="Remove entries unused for more than DAYS days.")
    @click.option("--all", "everything", is_flag=True, help="Remove every entry.")
    @click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
    def prune(store_dir, older_than, everything, dry_run):
        """Remove old, broken and abandoned entries (broken entries and dead
        writers' temp files always; unused ones with --older-than; all with --all)."""
        from dife_core.safetext import terminal

        st = _store(store_dir)
        gone = st.prune(older_than_s=None if older_than is None else older_than * 86400, everything=everything,
                        dry_run=dry_run)
        for p in gone:
            click.echo(("would remove " if dry_run else "removed ") + terminal(str(p)))
        click.echo(f"{'Would remove' if dry_run else 'Removed'} {len(gone)} file(s) from {terminal(str(st.root))}.")
