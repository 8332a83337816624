"""`rlhf eval score` on a samples file from "any system", numbers worked out by hand."""

import json

import pytest

from rlhf.cli import main as cli
from rlhf.eval.judges import ChatEndpoint
from rlhf.eval.score import parse_yes_no

pytest.importorskip("sacrebleu", reason="the scorer's BLEU and ROUGE need the `eval` extra: pip install -e .[eval]")
pytest.importorskip("rouge_score", reason="the scorer's BLEU and ROUGE need the `eval` extra: pip install -e .[eval]")

ROWS = [
    # model a, variant qa: one exact answer, one partial (F1 0.8, see test_answers), one "ugh"
    {"context": "Where is the tower?", "reference": ["the Eiffel Tower", "Eiffel"], "sample": "Eiffel tower", "model": "a", "variant": "qa"},
    {"context": "Which tower?", "reference": "the Eiffel Tower", "sample": "Eiffel tower, Paris", "model": "a", "variant": "qa"},
    {"context": "Say it", "reference": "the cat sat down", "sample": "ugh the cat sat", "model": "a", "variant": "qa"},
    # model a, variant plain; model b, variant qa
    {"prompt": "Say it", "reference": "the cat sat down", "response": "the cat sat", "model": "a", "variant": "plain"},
    {"context": [{"role": "user", "content": "Say it"}], "reference": "the cat sat down", "sample": "a dog", "model": "b",
     "variant": "qa", "id": "kept"},
]


def write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def score(tmp_path, *extra, rows=ROWS):
    samples = write(tmp_path / "samples.jsonl", rows)
    out = tmp_path / "scored"
    assert cli(["eval", "score", "--out", str(out), f"samples_file={samples}", "num_bootstrap=200", *extra]) == 0
    return json.loads((out / "metrics.json").read_text()), out


def test_reference_metrics_per_model_and_variant(tmp_path):
    from sacrebleu import corpus_bleu

    m, out = score(tmp_path)
    # a/qa: EM (1 + 0 + 0) / 3; F1 (1 + 0.8 + F1("ugh the cat sat", "the cat sat down")) / 3, where the
    # SQuAD tokens (articles dropped) are [ugh, cat, sat] vs [cat, sat, down]: 2 shared, P = R = 2/3
    assert m["score/exact_match/a/qa"] == pytest.approx(1 / 3)
    assert m["score/f1/a/qa"] == pytest.approx((1 + 0.8 + 2 / 3) / 3)
    # ROUGE-1 of "the cat sat" against "the cat sat down": P = 1, R = 3/4, F = 6/7
    assert m["score/rouge1/a/plain"] == pytest.approx(6 / 7)
    assert m["score/exact_match/b/qa"] == 0.0 and m["score/rows/a/qa"] == 3
    # corpus BLEU from per-row statistics equals sacrebleu's corpus BLEU (one reference a row here)
    rows = [r for r in ROWS if r["model"] == "a" and r["variant"] == "qa"]
    refs = [[r["reference"] if isinstance(r["reference"], str) else r["reference"][0] for r in rows]]
    rows[0] = {**rows[0], "reference": "the Eiffel Tower"}
    m1, _ = score(tmp_path / "one-ref", "metrics=[bleu]", rows=rows)
    assert m1["score/bleu/a/qa"] == pytest.approx(corpus_bleu([r["sample"] for r in rows], refs).score)
    assert m1["score/bleu_low/a/qa"] <= m1["score/bleu/a/qa"] <= m1["score/bleu_high/a/qa"]
    scored = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert scored[-1]["id"] == "kept" and scored[0]["scores"]["exact_match"] == 1.0
    assert "| a | qa | 3 |" in (out / "report.md").read_text()


def test_pluggable_toxicity_function_and_truthfulness_judge(tmp_path, monkeypatch):
    asked = []

    def complete(self, text):
        asked.append(text)
        return "I think so.\nVerdict: yes" if "tower" in text.split("[The model's answer]")[1].lower() else "hmm"

    monkeypatch.setattr(ChatEndpoint, "complete", complete)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "my_scorers.py").write_text("def toxic(rows, samples):\n    return [1.0 if 'ugh' in s else 0.0 for s in samples]\n")
    m, out = score(tmp_path, "metrics=[exact_match]", "toxicity=my_scorers:toxic",
                   "truthfulness=openai:judge@http://127.0.0.1:9/v1")
    assert m["score/toxicity/a/qa"] == pytest.approx(1 / 3) and m["score/toxicity/b/qa"] == 0.0
    # a/qa: two answers name the tower (yes), the third reply has no verdict: left out, and counted
    assert m["score/truthfulness/a/qa"] == 1.0 and m["score/truthfulness_unreadable/a/qa"] == 1
    assert len(asked) == 5 and "[Reference answers]\n- the Eiffel Tower\n- Eiffel" in asked[0]
    scored = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert scored[0]["judge"]["truthfulness"] == {"prompt": asked[0], "reply": "I think so.\nVerdict: yes"}


def test_parse_yes_no():
    assert parse_yes_no("Verdict: No") == 0.0 and parse_yes_no("yes.") == 1.0 and parse_yes_no("maybe") is None


def test_bad_rows_name_the_file_line_and_field(tmp_path, capsys):
    samples = write(tmp_path / "s.jsonl", [ROWS[0], {"context": "q", "sample": 3}])
    assert cli(["eval", "score", "--out", str(tmp_path / "o"), f"samples_file={samples}"]) == 2
    assert f"{samples}:2: field 'sample'" in capsys.readouterr().err
    samples = write(tmp_path / "s2.jsonl", [ROWS[0], {"context": "q", "sample": "x"}])
    assert cli(["eval", "score", "--out", str(tmp_path / "o2"), f"samples_file={samples}", "metrics=[f1]"]) == 2
    assert f"{samples}:2: field 'reference': is required by the metric f1" in capsys.readouterr().err


def test_both_scorers_are_loaded_before_the_first_row_is_scored(tmp_path, monkeypatch, capsys):
    """A truthfulness prompt file that is missing stops the run before the toxicity scorer (which may be a
    paid endpoint) has scored a row."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "counted_scorers.py").write_text(
        "calls = []\n\ndef toxic(rows, samples):\n    calls.append(len(rows))\n    return [0.0] * len(rows)\n")
    samples = write(tmp_path / "samples.jsonl", ROWS)
    assert cli(["eval", "score", "--out", str(tmp_path / "o"), f"samples_file={samples}", "metrics=[exact_match]",
                "toxicity=counted_scorers:toxic", "truthfulness=openai:judge@http://127.0.0.1:9/v1",
                f"truthfulness_prompt={tmp_path / 'missing.md'}"]) == 2
    assert f"truthfulness_prompt={tmp_path / 'missing.md'}: no such file" in capsys.readouterr().err
    import counted_scorers

    assert counted_scorers.calls == []
