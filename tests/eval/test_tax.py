"""`rlhf eval tax` runs lm-evaluation-harness offline on a small local custom task."""

import json

import pytest

from rlhf.cli import main as cli
from rlhf.eval.tax import task_metrics

TASK = """task: same_choices
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Q: {{{{question}}}}\\nA:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


def test_task_metrics_names():
    results = {"drop": {"alias": "drop", "em,none": 0.25, "em_stderr,none": 0.01, "f1,none": 0.5, "f1_stderr,none": "N/A"},
               "gsm8k": {"exact_match,strict-match": 0.1, "exact_match_stderr,strict-match": 0.02}}
    assert task_metrics(results, "ppo") == {
        "tax/drop/em/ppo": 0.25, "tax/drop/em_stderr/ppo": 0.01, "tax/drop/f1/ppo": 0.5,
        "tax/gsm8k/exact_match_strict-match/ppo": 0.1, "tax/gsm8k/exact_match_strict-match_stderr/ppo": 0.02}


@pytest.mark.slow
def test_tax_on_a_local_task(tiny_model_factory, tmp_path, monkeypatch, capsys):
    pytest.importorskip("lm_eval", reason="rlhf eval tax needs the `eval` extra: pip install -e .[eval]")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # Both choices are the same text, so every model scores them equally and lm-eval picks the first:
    # accuracy is the share of rows whose label is 0, 4 of 6, for any model.
    rows = [{"question": f"What is {i} plus 1?", "choices": [str(i + 1), str(i + 1)], "label": label}
            for i, label in enumerate([0, 1, 0, 0, 1, 0])]
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "same_choices.yaml").write_text(TASK.format(data=tmp_path / "qa.jsonl"))
    a, b = tiny_model_factory("gpt2"), tiny_model_factory("gpt2", seed=1)
    out = tmp_path / "tax"
    common = [f"include_path={tmp_path / 'tasks'}", "builtin_tasks=false", "batch_size=4"]
    assert cli(["eval", "tax", "--out", str(out), f"models=[{a},{b}]", "labels=[sft,ppo]", "tasks=[same_choices]",
                *common]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["tax/same_choices/acc/sft"] == pytest.approx(4 / 6) == m["tax/same_choices/acc/ppo"]
    assert m["tax/same_choices/acc_delta/ppo"] == pytest.approx(0.0)
    assert m["tax/same_choices/acc_stderr/ppo"] > 0
    samples = [json.loads(line) for line in (out / "tax" / "ppo" / "samples_same_choices.jsonl").read_text().splitlines()]
    assert len(samples) == 6 and samples[0]["arguments"][0][0] == "Q: What is 0 plus 1?\nA:"  # the exact prompt
    assert "same_choices" in json.loads((out / "tax" / "sft" / "results.json").read_text())["configs"]
    assert "| same_choices/acc | 0.667 [" in (out / "report.md").read_text()
    assert cli(["eval", "tax", "--out", str(tmp_path / "t2"), f"models=[{a}]", "tasks=[no_such_task]", *common]) == 2
    assert "no_such_task" in capsys.readouterr().err


def _local_task(tmp_path):
    rows = [{"question": f"What is {i} plus 1?", "choices": [str(i + 1), str(i + 1)], "label": label}
            for i, label in enumerate([0, 1, 0, 0, 1, 0])]
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "same_choices.yaml").write_text(TASK.format(data=tmp_path / "qa.jsonl"))
    return [f"include_path={tmp_path / 'tasks'}", "builtin_tasks=false", "batch_size=4", "tasks=[same_choices]"]


def test_tax_checks_every_model_and_template_before_the_first_runs(tiny_gpt2, templateless_gpt2, tmp_path,
                                                                    monkeypatch, capsys):
    """The default tasks take hours a model: a wrong last folder or template must not wait for the first."""
    pytest.importorskip("lm_eval", reason="rlhf eval tax needs the `eval` extra: pip install -e .[eval]")
    from rlhf.eval import tax

    monkeypatch.setattr(tax, "evaluate", lambda *a, **k: pytest.fail("a model was evaluated first"))
    common = ["eval", "tax", "--out", str(tmp_path / "tax"), *_local_task(tmp_path)]
    assert cli(common + [f"models=[{tiny_gpt2},{tmp_path / 'typo'}]"]) == 2
    assert f"model folder {tmp_path / 'typo'} does not exist" in capsys.readouterr().err
    assert cli(common + [f"models=[{tiny_gpt2},{templateless_gpt2}]", "chat_template=model"]) == 2
    assert f"models[1]={templateless_gpt2} has no chat template of its own" in capsys.readouterr().err
    assert cli(common + [f"models=[{tiny_gpt2}]", "chat_template=llama9"]) == 2
    assert "chat_template=llama9: neither a built-in (plain, chatml) nor a file" in capsys.readouterr().err
    assert cli(common + [f"models=[{tiny_gpt2}]", f"include_path={tmp_path / 'no-tasks'}"]) == 2
    assert "no-tasks: no such folder of lm-eval task YAMLs" in capsys.readouterr().err


@pytest.mark.slow
def test_tax_renders_lm_evals_prompts_with_chat_template(templateless_gpt2, tmp_path, monkeypatch):
    pytest.importorskip("lm_eval", reason="rlhf eval tax needs the `eval` extra: pip install -e .[eval]")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = tmp_path / "tax"
    assert cli(["eval", "tax", "--out", str(out), f"models=[{templateless_gpt2}]", "labels=[base]",
                "chat_template=chatml", *_local_task(tmp_path)]) == 0
    lines = (out / "tax" / "base" / "samples_same_choices.jsonl").read_text().splitlines()
    samples = [json.loads(line) for line in lines]
    # a base model without a template of its own, its prompts in chatml as one user message
    assert samples[0]["arguments"][0][0].startswith("<|im_start|>user\nQ: What is 0 plus 1?\nA:<|im_end|>\n"
                                                    "<|im_start|>assistant\n")
    assert json.loads((out / "metrics.json").read_text())["tax/same_choices/acc/base"] == pytest.approx(4 / 6)
    config = json.loads((out / "tax" / "base" / "results.json").read_text())["config"]
    assert config["model_args"]["tokenizer"] == f"{templateless_gpt2}, chat_template=chatml"
    assert "chat template: chatml" in (out / "report.md").read_text()
