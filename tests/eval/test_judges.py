"""The endpoint judge: verdict parsing, both orders cancelling position bias, the prompt file,
and `rlhf eval judge=openai:...` against `rlhf serve` running locally."""

import json
import sqlite3

import pytest
from tests.eval.conftest import run_eval

from rlhf.config import ConfigError
from rlhf.eval.judges import (
    ChatEndpoint, OpenAIJudge, both_orders, load_judge_prompt, parse_openai_spec, parse_verdict, position_stats, render,
)

TEMPLATE = "JUDGE-MARKER\nQ: {prompt}\nA: {response_a}\nB: {response_b}\nVerdict:"


def test_parse_verdict():
    assert parse_verdict("Both are fine, but A is wrong.\nVerdict: B") == "B"
    assert parse_verdict("verdict: a") == "A"
    assert parse_verdict("Verdict: **Response A**") == "A"
    assert parse_verdict("Verdict: tie") == "tie"
    assert parse_verdict("Verdict: A ... on reflection, Verdict: B") == "B"  # the last one counts
    assert parse_verdict(" B. ") == "B"
    assert parse_verdict("A") == "A"
    assert parse_verdict("A better answer would mention the date.") is None
    assert parse_verdict("") is None


def test_both_orders_cancel_a_position():
    # x shown first, then x shown second: A then B is x both times; A then A is position, a tie.
    assert both_orders("A", "B") == 1.0
    assert both_orders("B", "A") == 0.0
    assert both_orders("A", "A") == 0.5 and both_orders("B", "B") == 0.5
    assert both_orders("A", None) == 0.75  # an unreadable verdict counts half
    assert both_orders("tie", "tie") == 0.5


class FakeEndpoint(ChatEndpoint):
    """Answers with `rule(response_a, response_b)` instead of asking a server."""

    def __init__(self, rule):
        super().__init__("m", "http://unused", concurrency=2)
        self.rule, self.asked = rule, []

    def complete(self, text):
        self.asked.append(text)
        a = text.split("\nA: ")[1].split("\nB: ")[0]
        b = text.split("\nB: ")[1].split("\nVerdict:")[0]
        return self.rule(a, b)


def fake_judge(rule):
    endpoint = FakeEndpoint(rule)
    return OpenAIJudge(endpoint, TEMPLATE), endpoint.asked


def test_an_always_first_judge_gives_ties_and_a_fair_judge_is_unchanged():
    prompts, mine, base = ["p1", "p2", "p3"], ["long answer", "x", "same"], ["short", "longer one", "same"]
    biased, asked = fake_judge(lambda a, b: "Verdict: A")
    assert biased.compare_many(prompts, mine, base) == [0.5, 0.5, 0.5]
    assert len(asked) == 4  # two pairs, each in both orders; identical responses are not asked
    assert position_stats(biased.take_transcript()) == (1.0, 0.0)
    fair, _ = fake_judge(lambda a, b: "Verdict: A" if len(a) > len(b) else "Verdict: B")
    assert fair.compare_many(prompts, mine, base) == [1.0, 0.0, 0.5]
    rows = fair.take_transcript()
    assert [r["verdict_ab"] for r in rows] == ["A", "B"] and [r["verdict_ba"] for r in rows] == ["B", "A"]
    assert rows[0]["judge_prompt_ab"] == render(TEMPLATE, "p1", "long answer", "short")
    assert rows[0]["judge_prompt_ba"] == render(TEMPLATE, "p1", "short", "long answer")
    assert fair.take_transcript() == []


def test_judge_prompts_follow_the_paper_and_refuse_a_template_without_placeholders(tmp_path):
    final, where = load_judge_prompt("final")
    assert "truthfulness and harmlessness come first" in final and where.endswith("judge_final.md")
    assert "helpfulness to the user comes first" in load_judge_prompt("training")[0]
    conversation = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi {x}"}]
    assert render(final, conversation, "a", "b").count("user: hi {x}") == 1  # braces in text are kept
    (tmp_path / "bad.md").write_text("Which is better, {response_a} or {response_b}?")
    with pytest.raises(ConfigError, match=r"bad.md: .*missing \{prompt\}"):
        load_judge_prompt(str(tmp_path / "bad.md"))
    with pytest.raises(ConfigError, match="no such file"):
        load_judge_prompt(str(tmp_path / "none.md"))


def test_openai_spec():
    assert parse_openai_spec("openai:gpt-4o") == ("gpt-4o", "https://api.openai.com/v1")
    assert parse_openai_spec("openai:org/model:v2@http://127.0.0.1:8000/v1/") == ("org/model:v2", "http://127.0.0.1:8000/v1")
    with pytest.raises(ConfigError, match="expected openai:<model>@<base_url>"):
        parse_openai_spec("openai:@http://x")


def always_a_model(tiny_path, out):
    """A tiny GPT-2 whose every next token is "A", whatever it reads: a judge that only ever picks
    the first position. Its final layer norm outputs a constant that only the "A" embedding matches."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_path)
    a = tok.convert_tokens_to_ids("A")
    with torch.no_grad():
        u = torch.nn.functional.normalize(torch.randn(model.config.n_embd, generator=torch.Generator().manual_seed(0)), dim=0)
        model.transformer.wte.weight[a] = 10 * u  # tied: the unembedding of "A" too
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(10 * u)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.mark.slow
def test_eval_with_rlhf_serve_as_the_judge(runs, tiny_gpt2, tmp_path, monkeypatch, capsys):
    pytest.importorskip("fastapi", reason="rlhf serve needs the `serve` extra")
    from tests.serve.conftest import ServerThread

    from rlhf.serve.cli import build_state

    judge_model = always_a_model(str(tiny_gpt2), tmp_path / "always-a")
    (tmp_path / "keys.json").write_text(json.dumps({"sk-judge": "eval"}))
    (tmp_path / "judge.md").write_text(TEMPLATE)
    log = tmp_path / "served.db"
    state = build_state(str(judge_model), model_name="always-a", log_prompts=str(log), keys=str(tmp_path / "keys.json"),
                        device="cpu")
    with ServerThread(state) as server:
        judge = [f"judge=openai:always-a@{server.base_url}", f"judge_prompt={tmp_path / 'judge.md'}",
                 "judge_max_tokens=1", "judge_api_key_env=RLHF_TEST_JUDGE_KEY"]
        monkeypatch.delenv("RLHF_TEST_JUDGE_KEY", raising=False)
        with pytest.raises(AssertionError):
            run_eval(runs, runs / "nokey", *judge, "pretrain_file=", num_prompts=2)
        assert "refused the request (401)" in capsys.readouterr().err
        monkeypatch.setenv("RLHF_TEST_JUDGE_KEY", "sk-judge")
        m = run_eval(runs, runs / "eval", *judge, "pretrain_file=", num_prompts=8)
    # Every verdict is "A"; asked in both orders, every pair is a tie: no win rate from a position.
    assert m["eval/winrate/ppo"] == m["eval/winrate_low/ppo"] == m["eval/winrate_high/ppo"] == 0.5
    assert m["eval/judge_first/ppo"] == 1.0 and m["eval/judge_unparsed/ppo"] == 0.0
    assert m["eval/judge_is_training_rm"] == 0.0
    rows = [json.loads(line) for line in (runs / "eval" / "judgments.jsonl").read_text().splitlines()]
    assert rows and all(r["model"] == "ppo" and r["reply_ab"] == "A" == r["reply_ba"] for r in rows)
    with sqlite3.connect(log) as db:
        served = [json.loads(p)[0]["content"] for (p,) in db.execute("SELECT prompt FROM requests")]
    for r in rows:  # the server saw the user's prompt file, each pair in both orders
        assert r["judge_prompt_ab"] in served and r["judge_prompt_ba"] in served
        assert r["judge_prompt_ab"].startswith("JUDGE-MARKER")
    report = (runs / "eval" / "report.md").read_text()
    assert "Position bias of the judge" in report and "openai:always-a@" in report
