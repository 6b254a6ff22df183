"""Audit specs: structure, registry checks, TOML round trip, `dife validate`."""

import pytest

from dife_core.engine import AuditSpec, load_spec, validate_spec
from dife_core.errors import InvalidInputError

from .handmade import spec_dict


def test_defaults_are_documented_values(hand):
    s = AuditSpec.from_dict(spec_dict())
    assert s.thresholds.for_interface("text-reranking") == {"exposed": 0.5, "exposed_delta": 0.2,
                                                            "negative_delta": -0.02}
    assert (s.footprint.weak_signal, s.footprint.ratio, s.footprint.lead, s.footprint.eps) == (0.05, 0.7, 0.2, 1e-8)
    assert s.controls is True and s.interfaces == "all" and s.templates == "first"


def test_every_structural_problem_is_reported_with_its_key():
    bad = spec_dict(seed=-1, batch_size="big", colour="red", templates="some")
    bad["checkpoints"].append({"name": "x"})
    bad["thresholds"] = {"exposed": 2.0, "nope": 1}
    with pytest.raises(InvalidInputError) as ei:
        AuditSpec.from_dict(bad, where="audit.toml")
    msg = str(ei.value)
    for key in ("seed", "batch_size", "colour: unknown key", "templates", "checkpoints[2].source",
                "thresholds.exposed", "thresholds.nope"):
        assert key in msg, key
    assert msg.startswith("audit.toml: 7 problems")


def test_registry_problems_list_what_is_available(hand):
    d = spec_dict(interfaces=["zero-shot-classification", "no-such-interface"])
    d["checkpoints"][0]["loader"] = "no-such-loader"
    d["checkpoints"][1]["attack"] = dict(d["checkpoints"][1]["attack"], trigger={"channel": "image",
                                                                                 "name": "no-such-trigger"})
    d["populations"]["options"]["bogus"] = 1
    problems = {p.key: p.message for p in validate_spec(d)}
    assert "unknown interface 'no-such-interface'" in problems["interfaces[1]"]
    assert "zero-shot-classification" in problems["interfaces[1]"]  # the available ones are listed
    assert "handmade" in problems["checkpoints[0].loader"]
    assert "hand-patch" in problems["checkpoints[1].attack.trigger.name"]
    assert "populations.options.bogus" in problems
    assert validate_spec(spec_dict()) == []


def test_trigger_channel_must_match_the_family(hand):
    d = spec_dict()
    d["checkpoints"][0]["attack"] = dict(d["checkpoints"][0]["attack"],
                                         trigger={"channel": "image", "name": "hand-prefix"})
    keys = [p.key for p in validate_spec(d)]
    assert "checkpoints[0].attack.trigger.channel" in keys


def test_attack_cards_are_extensible(hand):
    d = spec_dict()
    d["checkpoints"][0]["attack"] = dict(d["checkpoints"][0]["attack"], checkpoint="textual", native={"value": 1})
    assert validate_spec(d) == []


def test_toml_round_trip_and_relative_sources(tmp_path, hand):
    (tmp_path / "ckpts" / "a").mkdir(parents=True)
    d = spec_dict(interface_options={"downstream-visual-classification": {"steps": 50}})
    d["thresholds"] = {"per_interface": {"text-reranking": {"exposed_delta": 0.3}}}
    d["checkpoints"][0]["source"] = "ckpts/a"
    d["checkpoints"][0]["loader"] = "handmade"
    s = AuditSpec.from_dict(d, base_dir=tmp_path)
    assert s.checkpoints[0].source == str((tmp_path / "ckpts" / "a").resolve())
    p = tmp_path / "out.toml"
    p.write_text(s.to_toml())
    again = load_spec(p)
    assert again.to_dict() == s.to_dict()
    assert again.thresholds.for_interface("text-reranking")["exposed_delta"] == 0.3


def test_bad_toml_is_a_clear_error(tmp_path):
    p = tmp_path / "a.toml"
    p.write_text("seed = = 1\n")
    with pytest.raises(InvalidInputError, match="not valid TOML"):
        load_spec(p)


def test_dife_validate_command(tmp_path, hand):
    from click.testing import CliRunner

    from dife_core.cli import build_cli

    good = tmp_path / "good.toml"
    good.write_text(AuditSpec.from_dict(spec_dict()).to_toml())
    r = CliRunner().invoke(build_cli(), ["validate", str(good)])
    assert r.exit_code == 0, r.output
    from dife_core.plugins import get_registry

    n = len(AuditSpec.from_dict(spec_dict()).interface_ids(get_registry().all("interfaces")))
    assert "OK" in r.output and f"{n} interface(s)" in r.output
    bad = tmp_path / "bad.toml"
    bad.write_text(AuditSpec.from_dict(spec_dict()).to_toml().replace('interfaces = "all"', 'interfaces = ["nope"]'))
    r = CliRunner().invoke(build_cli(), ["validate", str(bad)])
    assert r.exit_code != 0
    assert "interfaces[0]" in str(r.exception) and "zero-shot-classification" in str(r.exception)


def test_dataset_option_types_and_unsafe_keys_are_reported(hand):
    d = spec_dict()
    d["populations"]["options"]["n"] = "six"
    problems = {p.key: p for p in validate_spec(d)}
    assert "must be an integer like its default 6" in problems["populations.options.n"].message
    d = spec_dict()
    d["checkpoints"] = [dict(d["checkpoints"][0], options={"auto_map": {"AutoTokenizer": "evil.Tok"}})]
    (p,) = validate_spec(d)
    assert p.unsafe and "checkpoints[0].options.auto_map" in p.message
    ok = spec_dict()
    ok["checkpoints"] = [dict(ok["checkpoints"][0], trust=False)]  # older spec.toml files carry it
    assert validate_spec(ok) == []


def test_unknown_interface_options_are_rejected_with_the_valid_ones(hand):
    from dife_core.engine.spec import validate_spec

    probs = validate_spec(spec_dict(interface_options={"downstream-visual-classification": {"kk": 3, "l2": 0.1},
                                                       "zero-shot-classification": {"k": 1}}))
    text = {p.key: p.message for p in probs}
    assert "options: l2, lr, steps" in text["interface_options.downstream-visual-classification.kk"]
    assert "interface_options.downstream-visual-classification.l2" not in text
    assert "declares no options" in text["interface_options.zero-shot-classification.k"]
