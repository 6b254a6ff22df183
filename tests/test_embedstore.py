"""The persistent embedding store: shared across services and processes, safe
under concurrent writers and a writer killed mid-write; ``dife cache``."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from dife_core.embedstore import EmbeddingStore, from_env
from dife_core.engine.embeddings import EmbeddingService

KEY = {"tower": "T:abc", "branch": "visual", "population": "array:1", "trigger": "clean", "precision": "cpu-fp32"}


@pytest.fixture(scope="module")
def models():
    from dife_openclip.testing import tiny_encoder

    return tiny_encoder("vit", seed=1, name="clean"), tiny_encoder("vit", seed=2, name="new")


def test_put_get_round_trip_and_refusals(tmp_path):
    st = EmbeddingStore(tmp_path)
    assert st.get(KEY) is None
    f = torch.randn(50, 8)
    p = st.put(KEY, f, info={"name": "pop"})
    assert torch.equal(st.get(KEY), f) and st.get({**KEY, "trigger": "x"}) is None
    [e] = st.entries()
    assert e["rows"] == 50 and e["dim"] == 8 and e["info"] == {"name": "pop"} and e["tower"] == "T:abc"
    # flipped feature bytes: the SHA-256 check refuses the entry (it is re-encoded, never trusted)
    raw = bytearray(p.read_bytes())
    raw[-5] ^= 0xFF
    p.write_bytes(bytes(raw))
    assert st.get(KEY) is None
    p.write_bytes(b"junk")
    assert st.get(KEY) is None and st.entries()[0]["broken"]
    assert [x.name for x in st.prune()] == [p.name] and not p.exists()


def test_store_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("DIFE_EMBED_STORE", raising=False)
    assert from_env() is None
    monkeypatch.setenv("DIFE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("DIFE_EMBED_STORE", "1")
    assert from_env().root == tmp_path / "embeddings"
    monkeypatch.setenv("DIFE_EMBED_STORE", str(tmp_path / "elsewhere"))
    assert from_env().root == tmp_path / "elsewhere"
    monkeypatch.setenv("DIFE_EMBED_STORE", "off")
    assert EmbeddingService().store is None


def test_a_second_audit_encodes_only_the_new_checkpoints_towers(tmp_path, models):
    clean, new = models
    st = EmbeddingStore(tmp_path)
    px = torch.rand(20, 3, 32, 32)
    prompts = ["a photo of a cat", "a photo of a dog"]
    first = EmbeddingService(store=st, shard=8)
    a_img, a_txt = first.images(clean, "pop", px), first.texts(clean, prompts)
    assert {e[0] for e in first.log} and not first.store_hits
    second = EmbeddingService(store=st, shard=8)  # another audit: the clean model and one new checkpoint
    assert torch.equal(second.images(clean, "pop", px), a_img) and torch.equal(second.texts(clean, prompts), a_txt)
    assert second.log == []  # nothing of the clean model encoded again
    second.images(new, "pop", px)
    second.texts(new, prompts)
    from dife_core.engine.embeddings import tower_key

    assert {e[0] for e in second.log} == {tower_key(new, "visual"), tower_key(new, "text")}
    # the same pixels under another name are the same content: found; other pixels are not
    third = EmbeddingService(store=st, shard=8)
    assert torch.equal(third.images(clean, "renamed", px.clone()), a_img) and third.log == []
    third.images(clean, "pop", px.flip(0))
    assert len(third.log) == 3


def test_image_triggers_key_on_seed_and_shard(tmp_path, models):
    from dife_core.engine.embeddings import AppliedTrigger

    def fn(x, seed=0):
        return x + torch.rand(x.shape, generator=torch.Generator().manual_seed(seed)) * 0.1

    trig = AppliedTrigger("noise", "image", fn)
    st = EmbeddingStore(tmp_path)
    px = torch.rand(10, 3, 32, 32)
    EmbeddingService(store=st, seed=0).images(models[0], "p", px, trig)
    other_seed = EmbeddingService(store=st, seed=1)
    other_seed.images(models[0], "p", px, trig)
    assert len(other_seed.log) == 1  # a different seed places the trigger differently: encoded, not reused
    same = EmbeddingService(store=st, seed=0)
    same.images(models[0], "p", px, trig)
    assert same.log == []


WRITER = textwrap.dedent("""
    import sys, torch
    from dife_core.embedstore import EmbeddingStore
    st = EmbeddingStore(sys.argv[1])
    who = int(sys.argv[2])
    for i in range(40):
        key = {"tower": "T", "branch": "visual", "population": f"p{i % 5}", "trigger": "clean", "precision": "x"}
        # both writers write the same features per key (as two audits of the same tower would)
        f = torch.arange(2000 * 16, dtype=torch.float32).view(2000, 16) * (i % 5 + 1)
        st.put(key, f)
        got = st.get(key)
        assert got is None or torch.equal(got, f), "a reader saw a torn entry"
    print("ok", who)
""")


def test_two_concurrent_writer_processes(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(w)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for w in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    st = EmbeddingStore(tmp_path)
    assert len(st.entries()) == 5 and not st.temp_files()
    for i in range(5):
        key = {"tower": "T", "branch": "visual", "population": f"p{i}", "trigger": "clean", "precision": "x"}
        assert torch.equal(st.get(key), torch.arange(2000 * 16, dtype=torch.float32).view(2000, 16) * (i + 1))


HANGING_WRITER = textwrap.dedent("""
    import os, sys, time, torch
    from dife_core.embedstore import EmbeddingStore
    os.replace = lambda *a, **k: time.sleep(600)  # stall between the temp file and the rename
    EmbeddingStore(sys.argv[1]).put(json_key := {"tower": "T", "branch": "visual", "population": "p",
                                                 "trigger": "clean", "precision": "x"}, torch.ones(1000, 8) * 2)
""")


def test_a_writer_killed_mid_write_leaves_the_store_readable(tmp_path):
    st = EmbeddingStore(tmp_path)
    key = {"tower": "T", "branch": "visual", "population": "p", "trigger": "clean", "precision": "x"}
    st.put(key, torch.ones(1000, 8))  # an entry already there
    proc = subprocess.Popen([sys.executable, "-c", HANGING_WRITER, str(tmp_path)], stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not st.temp_files() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert st.temp_files(), proc.stderr.read()[-2000:] if proc.poll() is not None else "no temp file"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert torch.equal(st.get(key), torch.ones(1000, 8))  # the old entry, whole
    assert len(st.entries()) == 1
    gone = st.prune()  # the dead writer's temp file goes; the entry stays
    assert len(gone) == 1 and gone[0].name.startswith(".tmp-") and not st.temp_files()
    assert torch.equal(st.get(key), torch.ones(1000, 8))


def _cli(args, capsys):
    from dife_core.cli import main

    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code
    return code or 0, capsys.readouterr().out


def test_cache_commands(tmp_path, capsys, models):
    st = EmbeddingStore(tmp_path / "emb")
    svc = EmbeddingService(store=st)
    svc.images(models[0], "my-pop", torch.rand(6, 3, 32, 32))
    svc.texts(models[0], ["a cat"])
    code, out = _cli(["cache", "ls", "--store", str(st.root)], capsys)
    assert code == 0 and "my-pop" in out and "visual" in out and "text" in out
    code, out = _cli(["cache", "ls", "--json", "--store", str(st.root)], capsys)
    assert len(json.loads(out)) == 2
    code, out = _cli(["cache", "du", "--json", "--store", str(st.root)], capsys)
    du = json.loads(out)
    assert du["entries"] == 2 and du["bytes"] == sum(e["bytes"] for e in st.entries())
    code, out = _cli(["cache", "prune", "--older-than", "1", "--store", str(st.root)], capsys)
    assert "Removed 0 file(s)" in out and len(st.entries()) == 2
    code, out = _cli(["cache", "prune", "--all", "--dry-run", "--store", str(st.root)], capsys)
    assert "Would remove 2" in out and len(st.entries()) == 2
    code, out = _cli(["cache", "prune", "--all", "--store", str(st.root)], capsys)
    assert "Removed 2" in out and st.entries() == []
