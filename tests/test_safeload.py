"""Safe loading: hostile pickles are refused naming the global, with no code run;
malformed safetensors headers are caught before the library touches them."""

import pickle
import warnings

import pytest
import torch

from dife_core import safeload
from dife_core.errors import InvalidInputError, UnsafeCheckpointError

from .malicious_files import (
    MALFORMED_SAFETENSORS,
    PAYLOAD_GLOBAL,
    PAYLOADS,
    polyglot,
    rezip,
    state_dict_with,
    write,
    write_legacy,
    write_raw_pickle,
    write_torch_zip,
)

CONTAINERS = {
    "torch-zip": write_torch_zip,
    "legacy": write_legacy,
    "raw-pickle-p2": lambda p, o: write_raw_pickle(p, o, protocol=2),
    "raw-pickle-p4": lambda p, o: write_raw_pickle(p, o, protocol=4),
}


@pytest.fixture
def sentinel(tmp_path):
    s = tmp_path / "PWNED"
    yield s
    assert not s.exists(), "a checkpoint payload ran"


@pytest.mark.parametrize("case", sorted(PAYLOADS))
def test_payloads_are_real(case, tmp_path):
    """The crafted payloads do run under plain pickle (so the refusals below mean something)."""
    s = tmp_path / "ran"
    pickle.loads(pickle.dumps(PAYLOADS[case](s), protocol=2))
    assert s.exists()


@pytest.mark.parametrize("container", sorted(CONTAINERS))
@pytest.mark.parametrize("case", sorted(PAYLOADS))
def test_malicious_pickle_refused_naming_the_global(case, container, tmp_path, sentinel):
    path = CONTAINERS[container](tmp_path / "evil.pt", state_dict_with(PAYLOADS[case](sentinel)))
    with pytest.raises(UnsafeCheckpointError) as ei:
        safeload.load_state_dict(path)
    msg = str(ei.value)
    assert PAYLOAD_GLOBAL[case] in msg
    assert "Nothing from it was executed" in msg and "--trust-checkpoint" in msg
    assert ei.value.exit_code == 3


@pytest.mark.parametrize("case", sorted(PAYLOADS))
def test_static_scan_names_the_global_without_loading(case, tmp_path, sentinel):
    path = write_torch_zip(tmp_path / "evil.pt", state_dict_with(PAYLOADS[case](sentinel)))
    scan = safeload.scan_pickle(path)
    assert scan.container == "torch-zip"
    assert any(PAYLOAD_GLOBAL[case] in g for g in scan.suspicious)
    legacy = safeload.scan_pickle(write_legacy(tmp_path / "evil-legacy.pt", state_dict_with(PAYLOADS[case](sentinel))))
    assert legacy.container == "legacy-pickle"
    assert any(PAYLOAD_GLOBAL[case] in g for g in legacy.suspicious)


def test_benign_state_dict_loads_in_every_container(tmp_path):
    sd = {"visual.w": torch.randn(3, 4), "text.w": torch.arange(5)}
    for name, write_fn in (("zip", write_torch_zip), ("legacy", write_legacy)):
        got = safeload.load_state_dict(write_fn(tmp_path / f"{name}.pt", sd))
        assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
    scan = safeload.scan_pickle(tmp_path / "zip.pt")
    assert scan.suspicious == ()


def test_wrapped_and_dataparallel_state_dicts_unwrap(tmp_path):
    sd = {"module.visual.w": torch.ones(2)}
    got = safeload.load_state_dict(write_torch_zip(tmp_path / "w.pt", {"state_dict": sd, "epoch": 3}))
    assert list(got) == ["visual.w"]


def test_never_retries_without_weights_only(tmp_path, sentinel, monkeypatch):
    calls = []
    real = torch.load

    def spy(*a, **kw):
        calls.append(kw.get("weights_only"))
        return real(*a, **kw)

    monkeypatch.setattr(torch, "load", spy)
    path = write_torch_zip(tmp_path / "evil.pt", state_dict_with(PAYLOADS["os.system"](sentinel)))
    with pytest.raises(UnsafeCheckpointError):
        safeload.load_state_dict(path)
    assert calls == [True]


def test_trust_lifts_the_refusal_with_a_warning(tmp_path):
    """A file needing a non-allowlisted but harmless global loads only with trust=True."""
    import argparse

    path = write_torch_zip(tmp_path / "ns.pt", {"state_dict": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=1)})
    with pytest.raises(UnsafeCheckpointError, match="argparse.Namespace"):
        safeload.load_state_dict(path)
    with pytest.warns(safeload.TrustWarning, match="argparse.Namespace"):
        got = safeload.load_state_dict(path, trust=True)
    assert torch.equal(got["w"], torch.ones(2))


def test_trust_is_the_only_gate(tmp_path):
    """With trust=True the payload really is loaded: the flag is not cosmetic."""
    s = tmp_path / "ran"
    path = write_torch_zip(tmp_path / "evil.pt", state_dict_with(PAYLOADS["eval"](s)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        safeload.load_pickle(path, trust=True)
    assert s.exists()


def test_zip_tricks_are_malformed(tmp_path, sentinel):
    good = write_torch_zip(tmp_path / "good.pt", {"w": torch.ones(2)})
    cases = {
        "compressed": rezip(good, tmp_path / "deflated.pt", compress=True),
        "duplicate": rezip(good, tmp_path / "dup.pt", duplicate=True),
        "polyglot": polyglot(tmp_path / "poly.pt", pickle.dumps(PAYLOADS["os.system"](sentinel), protocol=2), good),
        "truncated": write(tmp_path / "trunc.pt", good.read_bytes()[: good.stat().st_size // 2]),
    }
    for name, path in cases.items():
        with pytest.raises(InvalidInputError) as ei:
            safeload.load_state_dict(path)
        assert ei.value.exit_code == 2, name
        assert str(path) in str(ei.value), name


def test_garbage_file_is_malformed(tmp_path):
    with pytest.raises(InvalidInputError, match="unrecognised weight file"):
        safeload.load_state_dict(write(tmp_path / "x.bin", b"hello world, not a checkpoint"))
    with pytest.raises(InvalidInputError):
        safeload.load_state_dict(write(tmp_path / "y.pt", b"\x80\x02" + b"\xff" * 40))


# -- safetensors ---------------------------------------------------------------

def test_valid_safetensors_passes_and_loads(tmp_path):
    from safetensors.torch import save_file

    sd = {"a": torch.randn(3, 5), "b": torch.zeros(0), "c": torch.arange(7, dtype=torch.int64),
          "d": torch.randn(2, dtype=torch.bfloat16)}
    save_file(sd, str(tmp_path / "ok.safetensors"), metadata={"format": "pt"})
    h = safeload.validate_safetensors(tmp_path / "ok.safetensors")
    assert sorted(h.names) == ["a", "b", "c", "d"] and h.metadata == {"format": "pt"}
    got = safeload.load_safetensors(tmp_path / "ok.safetensors")
    assert all(torch.equal(got[k], sd[k]) for k in sd)


EXPECT = {
    "oversized-header-length": "exceeds",
    "header-past-end-of-file": "past the end of the file",
    "overlapping-offsets": "overlap",
    "bad-json": "not valid JSON",
    "unknown-dtype": "unknown dtype",
    "shape-size-mismatch": "needs 12 bytes",
    "offsets-past-end": "past the end of the data",
    "truncated-data": "past the end of the data",
    "gap-between-tensors": "gap",
    "duplicate-key": "duplicate key",
    "header-not-object": "not JSON",
    "too-short": "header length",
    "negative-shape": "non-negative",
}


@pytest.mark.parametrize("case", sorted(MALFORMED_SAFETENSORS))
def test_malformed_safetensors_clear_error(case, tmp_path, monkeypatch):
    import safetensors.torch

    def never(*a, **k):
        raise AssertionError("safetensors was called on a file that failed validation")

    monkeypatch.setattr(safetensors.torch, "load_file", never)
    path = write(tmp_path / "bad.safetensors", MALFORMED_SAFETENSORS[case]())
    with pytest.raises(InvalidInputError) as ei:
        safeload.load_safetensors(path)
    assert EXPECT[case] in str(ei.value)
    assert str(path) in str(ei.value)
    assert ei.value.exit_code == 2


def test_header_bound_is_checked_before_reading(tmp_path, monkeypatch):
    """An 8-byte file claiming a 4 EB header is rejected without a giant read."""
    import builtins

    path = write(tmp_path / "huge.safetensors", MALFORMED_SAFETENSORS["oversized-header-length"]())
    real_open = builtins.open
    reads = []

    class Spy:
        def __init__(self, f):
            self.f = f

        def read(self, n=-1):
            reads.append(n)
            return self.f.read(n)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

    monkeypatch.setattr(builtins, "open",
                        lambda p, *a, **k: Spy(real_open(p, *a, **k)) if str(p) == str(path) else real_open(p, *a, **k))
    with pytest.raises(InvalidInputError):
        safeload.validate_safetensors(path)
    assert reads == [8]


def test_legacy_storage_size_bomb_is_a_clear_error(tmp_path):
    """A legacy pickle declaring a 400 GB storage fails fast with a clear error."""
    write_legacy(tmp_path / "small.pt", {"w": torch.zeros(3)})
    data = bytearray((tmp_path / "small.pt").read_bytes())
    marker = b"X\x03\x00\x00\x00cpuq\x06"
    at = data.index(marker + b"K\x03") + len(marker)
    n = 10**11
    nb = n.to_bytes((n.bit_length() + 8) // 8, "little")
    data[at:at + 2] = b"\x8a" + bytes([len(nb)]) + nb  # numel 3 -> 1e11 (LONG1)
    path = write(tmp_path / "bomb.pt", bytes(data))
    with pytest.raises(InvalidInputError, match="damaged or truncated"):
        safeload.load_state_dict(path)
