"""``locate`` reports its neuron set's controls, specificity verdict and the critics' checks (issue #25)."""
from __future__ import annotations

import json

from kn_core.cli import main

ARGS = ["locate", "--model", "demo-clm", "--lang", "en", "--template", "The capital of [X] is [Y].", "--subject",
        "France", "--object", "Paris", "--steps", "4", "--no-cache"]


def test_locate_json_has_controls_specificity_and_checks(tmp_path, capsys, one_thread):
    out = tmp_path / "out.json"
    assert main([*ARGS, "--draws", "12", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "specificity:" in printed and "rule: none:" in printed and "top-1 flip:" in printed
    data = json.loads(out.read_text(encoding="utf-8"))
    controls = data["controls"]
    assert set(controls) >= {"own", "same_relation", "other_relation", "random"}
    assert set(controls["random"]) == {"mean", "sd", "draws", "rank"} and controls["random"]["draws"] == 12
    assert controls["relation"] == "P36" and len(controls["same_relation_facts"]) == 5
    assert len(controls["other_relation_facts"]) == 5
    assert {f["fact_id"][:4] for f in controls["same_relation_facts"]} == {"P36-"}
    assert not any(f["fact_id"].startswith("P36-") for f in controls["other_relation_facts"])
    assert data["specificity"] in ("fact", "relation", "generic", "none")
    assert controls["own"] == data["suppress"]["own"]
    checks = data["checks"]
    assert 0.0 <= checks["top1"]["flip_rate"] <= 1.0 and checks["top1"]["prompts"][0]["before"]
    assert checks["paraphrase"]["templates"] and checks["reverse"]["template"] == "[X] is the capital of [Y]."


def test_locate_refuses_an_unknown_relation(capsys):
    assert main([*ARGS, "--relation", "P999"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "P36" in err[0]
