"""Acceptance: hand-made textual and visual carriers audited end to end."""

import collections
import json

import attrs
import pytest

from dife_core import hookimpl
from dife_core.engine import NotEvaluable, load_spec, run_audit
from dife_core.types import Attack, AttackCard, Interface, InterfaceCard

from .handmade import BUILTIN_IDS, CLASSES, TARGET, VISUAL_CARD, spec_dict

TEXTUAL_EXPECT = {
    "zero-shot-classification": ("n.e.", "no image trigger channel"),
    "prompt-conditioned-classification": ("exposed", None),
    "targeted-retrieval": ("exposed", None),
    "image-text-retrieval": ("n.e.", "no image trigger channel"),
    "text-reranking": ("exposed", None),
    "candidate-selection": ("exposed", None),
    "downstream-visual-classification": ("n.e.", "bypassed footprint"),
    "text-embedding": ("exposed", None),
}
VISUAL_EXPECT = {
    "zero-shot-classification": ("exposed", None),
    "prompt-conditioned-classification": ("n.e.", "no text trigger channel"),
    "targeted-retrieval": ("n.e.", "no text trigger channel"),
    "image-text-retrieval": ("exposed", None),
    "text-reranking": ("n.e.", "no text trigger channel"),
    "candidate-selection": ("n.e.", "no text trigger channel"),
    "downstream-visual-classification": ("exposed", None),
    "text-embedding": ("n.e.", "bypassed footprint"),
}


def _cells(results, name):
    return {c["interface"]: c for c in results["cells"] if c["checkpoint"] == name}


def test_carriers_statuses_reasons_footprints_and_prediction(tmp_path, hand):
    # the carriers were designed for the built-in interfaces (plugin interfaces have their own tests)
    res = run_audit(spec_dict(interfaces=list(BUILTIN_IDS)), tmp_path, progress=False)
    for name, expect in (("textual", TEXTUAL_EXPECT), ("visual", VISUAL_EXPECT)):
        cells = _cells(res, name)
        assert list(cells) == list(expect)  # the listed order
        for iface, (status, reason) in expect.items():
            c = cells[iface]
            assert c["status"] == status, (name, iface, c)
            if status == "n.e.":
                assert c["value"] is None and c["reason"].startswith(reason), (name, iface, c["reason"])
            else:
                assert c["value"] == pytest.approx(1.0) and c["reason"] is None
    fps = {f["checkpoint"]: f for f in res["footprints"]}
    t, v = fps["textual"], fps["visual"]
    assert (t["a00"], t["a10"], t["a01"], t["a11"]) == (0.0, 0.0, 1.0, 1.0)
    assert (v["a00"], v["a10"], v["a01"], v["a11"]) == (0.0, 1.0, 0.0, 1.0)
    assert t["footprint"] == "textual" and v["footprint"] == "visual"
    assert t["trs"] == pytest.approx(1.0) and v["vrs"] == pytest.approx(1.0)
    assert set(t["predicted_exposed"]) == {i for i, (s, _) in TEXTUAL_EXPECT.items() if s == "exposed"}
    assert set(v["predicted_exposed"]) == {i for i, (s, _) in VISUAL_EXPECT.items() if s == "exposed"}
    assert t["prediction_holds"] is True and v["prediction_holds"] is True
    # controls: the clean reference under each trigger spec is measured and never flagged
    for name in ("clean@textual", "clean@visual"):
        cells = _cells(res, name)
        assert not [c for c in cells.values() if c["status"] == "exposed"]
        assert any(c["status"] == "weak" for c in cells.values())
    assert [c["flagged"] for c in res["controls"]] == [False, False]
    # clean utility beside exposure, for every row
    for ck in res["checkpoints"]:
        assert ck["clean_utility"]["clean_acc"] == pytest.approx(1.0), ck["name"]
        assert "i2t_r@1" in ck["clean_utility"]


def test_results_json_keys_and_spec_toml(tmp_path, hand):
    res = run_audit(spec_dict(), tmp_path, progress=False)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk == res
    top = {"dife_version", "spec", "seed", "plugins", "checkpoints", "cells", "footprints"}
    assert top <= set(res)
    assert {"name", "loader", "fingerprint", "attack", "clean_utility"} <= set(res["checkpoints"][0])
    assert set(res["checkpoints"][0]["fingerprint"]) == {"visual", "text"}
    for c in res["cells"]:
        assert {"checkpoint", "interface", "status", "metric", "value", "metrics", "reference", "reason",
                "card"} <= set(c)
        assert {"readout", "trigger_channels", "target_event", "population", "reference"} <= set(c["card"])
        assert c["status"] in ("exposed", "weak", "negative", "n.e.", "error")
        assert c["thresholds"] == {"exposed": 0.5, "exposed_delta": 0.2, "negative_delta": -0.02}
    for f in res["footprints"]:
        assert {"checkpoint", "a00", "a10", "a01", "a11", "signal", "vrs", "trs", "css", "footprint", "probe",
                "predicted_exposed", "prediction_holds"} <= set(f)
    # spec.toml is the exact spec, runnable again
    assert load_spec(tmp_path / "spec.toml").to_dict() == res["spec"]
    assert (tmp_path / "report.md").is_file() and (tmp_path / "report.html").is_file()


def test_every_tower_input_trigger_is_encoded_exactly_once(tmp_path, hand):
    from dife_core.engine.runner import Audit
    from dife_core.engine.spec import AuditSpec

    audit = Audit(AuditSpec.from_dict(spec_dict()), tmp_path, resume=False, progress=False)
    audit.run()
    # encoder level: no (tower, row) pair was ever encoded twice -- across interfaces, controls, hybrids
    counts = collections.Counter(hand.CALLS)
    assert counts and max(counts.values()) == 1, [k for k, n in counts.items() if n > 1][:5]
    # towers that encoded anything: clean + visual carrier images, clean + textual carrier text
    towers = {(b, fp) for b, fp, _ in hand.CALLS}
    clean, vis, txt = (hand.HandEncoder(k).fingerprint() for k in ("clean", "visual", "textual"))
    assert towers == {("visual", clean["visual"]), ("visual", vis["visual"]), ("text", clean["text"]),
                      ("text", txt["text"])}
    # service level: one encode job per (tower, input set, trigger) (all sets fit one shard here)
    jobs = collections.Counter(entry[:4] for entry in audit.embeddings.log)
    assert max(jobs.values()) == 1
    # image sets: (test, train, pool) x (clean, patch) for the two visual towers that exist, as needed
    img_jobs = {(k[0], k[2], k[3]) for k in jobs if k[1] == "visual"}
    for name in ("hand0/test", "hand0/pool"):
        for tw in {k[0] for k in img_jobs}:
            assert (tw, name, "clean") in img_jobs


class _BrokenInterfaces:
    @hookimpl
    def register_interfaces(self, register):
        def boom(ctx):
            raise RuntimeError("evaluator exploded")

        def undefined(ctx):
            raise NotEvaluable("no ranked candidates in this toy population")

        for name, fn in (("broken-interface", boom), ("undefined-interface", undefined)):
            register(Interface(card=InterfaceCard(name=name, title=name, readout="score",
                                                  trigger_channels=("image", "text"), target_event="t",
                                                  population="classification", reference=None, metric="ts"),
                               evaluate=fn))


def test_failing_evaluator_is_an_error_cell_and_the_audit_continues(tmp_path, hand, register_plugin):
    register_plugin(_BrokenInterfaces(), "broken-interfaces")
    # the carriers were designed for the built-in interfaces (plugin interfaces have their own tests)
    res = run_audit(spec_dict(interfaces=[*BUILTIN_IDS, "broken-interface", "undefined-interface"]), tmp_path,
                    progress=False)
    broken = [c for c in res["cells"] if c["interface"] == "broken-interface"]
    assert broken and all(c["status"] == "error" and "evaluator exploded" in c["reason"] for c in broken)
    assert all(c["value"] is None for c in broken)
    und = [c for c in res["cells"] if c["interface"] == "undefined-interface"]
    assert all(c["status"] == "n.e." and c["reason"] == "no ranked candidates in this toy population" for c in und)
    # plugin interfaces come after the built-ins; the rest of the audit is intact
    assert _cells(res, "textual")["text-reranking"]["status"] == "exposed"
    assert {f["footprint"] for f in res["footprints"]} == {"textual", "visual"}
    # error / extra cells outside the prediction do not break it
    assert all(f["prediction_holds"] for f in res["footprints"])


@attrs.define
class _NoConfig:
    pass


class _MechanismAttack:
    """A mechanism attack: towers untouched, a shipped classifier that fires on the patch."""

    @hookimpl
    def register_attacks(self, register):
        def scorer(mctx):
            import torch

            target = list(mctx.world.classnames).index(mctx.card["target"])
            w = torch.nn.functional.normalize(mctx.model.encode_text([f"a photo of a {c}" for c in CLASSES]), dim=-1)

            def classify(pixels):
                feats = torch.nn.functional.normalize(mctx.model.encode_image(pixels), dim=-1)
                logits = feats @ w.T
                patch = pixels[:, :, -2:, -2:].reshape(len(pixels), -1).mean(1) > 0.95
                logits[patch, target] = 10.0
                return logits

            return classify

        def repair_probe(mctx):
            assert mctx.clean is not None and mctx.card["attack"] == "hand-mech"
            return {"full": 1.0, "prompt_only": 0.1002, "trigger_only": 0.0998, "both_clean": 0.1019}

        register(Attack(card=AttackCard(name="hand-mech", title="mech", route="prompt learning",
                                        modifies="prompt learner", trigger_channel="mechanism",
                                        native_protocol="prompt classifier TS", probe="component-repair"),
                        config=_NoConfig, build=lambda ctx: None, repair_probe=repair_probe, scorer=scorer))


def test_mechanism_attack_uses_its_scorer_and_component_repair(tmp_path, hand, register_plugin):
    register_plugin(_MechanismAttack(), "mech-attack")
    card = {"attack": "hand-mech", "modifies": "prompt learner", "probe": "component-repair", "source": None,
            "target": TARGET, "trigger": {"channel": "mechanism", "name": "hand-patch", "params": {}}}
    d = spec_dict(checkpoints=[{"name": "mech", "source": "clean", "loader": "handmade", "attack": card}])
    res = run_audit(d, tmp_path, progress=False)
    cells = _cells(res, "mech")
    down = cells["downstream-visual-classification"]
    assert down["status"] == "exposed" and down["channel"] == "mechanism" and "shipped classifier" in down["notes"]
    assert cells["zero-shot-classification"]["status"] == "weak"  # the image trigger alone does nothing
    assert cells["zero-shot-classification"]["channel"] == "image"
    rr = cells["text-reranking"]
    assert rr["status"] == "n.e." and "mechanism this interface does not instantiate" in rr["reason"]
    f = res["footprints"][0]
    assert f["probe"] == "component-repair" and f["footprint"] == "coupled"
    assert f["repair"]["full"] == 1.0 and f["a11"] == 1.0 and f["a00"] == 0.1019
    assert f["predicted_exposed"] == ["downstream-visual-classification"]
    assert f["prediction_holds"] is True
    # the control row has no shipped classifier: it falls back to the probe on clean features
    ctl = _cells(res, "clean@mech")["downstream-visual-classification"]
    assert ctl["channel"] == "image" and ctl["status"] == "weak"


def test_without_clean_reference(tmp_path, hand):
    d = spec_dict()
    del d["clean"]
    res = run_audit(d, tmp_path, progress=False)
    assert [r["checkpoint"] for r in res["cells"]].count("clean@textual") == 0
    sel = _cells(res, "textual")["candidate-selection"]
    assert sel["status"] == "n.e." and sel["question"] == "reference" and "no clean reference" in sel["reason"]
    assert all(f["footprint"] is None and "no clean reference" in f["reason"] for f in res["footprints"])


def test_attack_card_comes_from_the_checkpoint_manifest(tmp_path, hand):
    from dife_core.checkpoint import save_checkpoint

    ck = save_checkpoint(hand.HandEncoder("visual"), tmp_path / "ckpt-visual", attack=VISUAL_CARD)
    d = spec_dict(interfaces=["zero-shot-classification", "text-embedding"],
                  checkpoints=[{"name": "from-disk", "source": str(ck)}])
    res = run_audit(d, tmp_path / "out", progress=False)
    cells = _cells(res, "from-disk")
    assert cells["zero-shot-classification"]["status"] == "exposed"
    assert cells["text-embedding"]["reason"].startswith("bypassed footprint")
    assert res["checkpoints"][1]["attack"]["attack"] == "hand-visual"
    assert res["footprints"][0]["footprint"] == "visual"


def test_cli_audit_then_report_rerenders_the_same_results(tmp_path, hand):
    from click.testing import CliRunner

    from dife_core.cli import build_cli
    from dife_core.engine import AuditSpec

    spec = tmp_path / "audit.toml"
    spec.write_text(AuditSpec.from_dict(spec_dict(interfaces=["prompt-conditioned-classification",
                                                              "zero-shot-classification"])).to_toml())
    out = tmp_path / "out"
    r = CliRunner().invoke(build_cli(), ["audit", str(spec), "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output + repr(r.exception)
    first = (out / "results.json").read_text()
    (out / "results.json").unlink()
    (out / "report.html").unlink()
    r = CliRunner().invoke(build_cli(), ["report", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert (out / "results.json").read_text() == first and (out / "report.html").is_file()
    r = CliRunner().invoke(build_cli(), ["report", str(tmp_path / "nothing-here")])
    assert r.exit_code != 0 and "holds no audit records" in str(r.exception)


def test_progress_bars_and_terminal_matrix(tmp_path, hand, capsys):
    run_audit(spec_dict(interfaces=["text-reranking"]), tmp_path, progress=True)
    out, err = capsys.readouterr()
    assert "DIFE exposure matrix" in out and "N.E." in out and "textual" in out
    assert "records computed" in err


def test_cli_reports_a_bad_spec_as_one_paragraph_and_exit_2(tmp_path, hand, capsys):
    from dife_core.cli import main

    spec = tmp_path / "bad.toml"
    spec.write_text('seed = 0\ninterfaces = ["nope"]\n[populations]\ndataset = "handworld"\n'
                    '[[checkpoints]]\nsource = "visual"\nloader = "handmade"\n')
    with pytest.raises(SystemExit) as ei:
        main(["audit", str(spec), "--out", str(tmp_path / "out")])
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("Error:") and "interfaces[0]: unknown interface 'nope'" in " ".join(err.split())
    assert "Traceback" not in err


def test_fail_on_exposed_gives_the_documented_exit_code(tmp_path, hand):
    from click.testing import CliRunner

    from dife_core.cli import build_cli
    from dife_core.engine.spec import AuditSpec
    from dife_core.engine.verdicts import EXIT_EXPOSED

    spec = tmp_path / "spec.toml"
    spec.write_text(AuditSpec.from_dict(spec_dict(interfaces=list(BUILTIN_IDS))).to_toml())
    r = CliRunner().invoke(build_cli(), ["audit", str(spec), "--out", str(tmp_path / "a"), "--no-progress",
                                         "--fail-on", "exposed"])
    assert r.exit_code == EXIT_EXPOSED, r.output
    r = CliRunner().invoke(build_cli(), ["audit", str(spec), "--out", str(tmp_path / "b"), "--no-progress",
                                         "--fail-on", "nonsense"])
    assert r.exit_code == 2


class _UniversalTrigger:
    """An image-fed interface on which the trigger alone is exposed, on any model (a universal
    adversarial trigger): the attacked row and its control both come out exposed."""

    @hookimpl
    def register_interfaces(self, register):
        from dife_core.engine.cells import CellResult

        register(Interface(card=InterfaceCard(name="trigger-alone", title="trigger alone", readout="image-features",
                                              trigger_channels=("image",), target_event="t",
                                              population="classification", reference=None, metric="ts"),
                           evaluate=lambda ctx: CellResult(value=1.0, metrics={"ts": 1.0})))


def test_a_cell_the_control_reproduces_is_confounded_not_predicted(tmp_path, hand, register_plugin):
    register_plugin(_UniversalTrigger(), "universal-trigger")
    res = run_audit(spec_dict(interfaces=[*BUILTIN_IDS, "trigger-alone"]), tmp_path, progress=False)
    assert _cells(res, "visual")["trigger-alone"]["status"] == "exposed"
    assert _cells(res, "clean@visual")["trigger-alone"]["status"] == "exposed"
    v = {f["checkpoint"]: f for f in res["footprints"]}["visual"]
    assert v["confounded"] == ["trigger-alone"]
    assert "trigger-alone" not in v["predicted_exposed"] + v["predicted_weak"]
    assert v["prediction_holds"] is True
    t = {f["checkpoint"]: f for f in res["footprints"]}["textual"]
    assert t["confounded"] == []  # its control is not exposed there (the cell is N.E.: no image trigger)
