"""Every input file is read and checked before a stage's first step (issue 16 item 21), and
`chat_template=` gives base models a template that later stages and `rlhf serve` reuse (item 22)."""

from __future__ import annotations

import json

import pytest

from rlhf.cli import main as cli_main
from rlhf.config import ConfigError, load_config
from rlhf.core.models import load_tokenizer
from rlhf.core.tokens import CHAT_TEMPLATES, encode_prompt
from rlhf.data import RecordError
from rlhf.inputs import InputFile, check_inputs
from tests.helpers import SAMPLE, run_cli, sft_config

CONVERSATION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi."}]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _plain_comparisons(tmp_path):
    return _jsonl(tmp_path / "pairs.jsonl", [
        {"prompt": f"Say hello to {name}.", "responses": [f"Hello, {name}!", "no"], "ranking": [0, 1]}
        for name in ("Ada", "Bo", "Cy", "Di")
    ])


# --- item 21: inputs checked before the first step ----------------------------------------------

def test_rm_stops_on_a_norm_file_it_cannot_render_before_training(templateless_gpt2, tmp_path, capsys, monkeypatch):
    """The issue's case: plain train/eval files, the example's norm_file of chat prompts, a tokenizer
    without a template. It used to train to the end and fail while normalising."""
    from rlhf.rm import train as rm_train

    def trained(*args, **kwargs):
        raise AssertionError("a training step ran before the inputs were checked")

    monkeypatch.setattr(rm_train, "backward_micro_batches", trained)
    monkeypatch.setattr(rm_train, "reward_model_from_lm", trained)  # the check comes before the model loads
    pairs = _plain_comparisons(tmp_path)
    args = ["rm", "--config", "configs/example/rm.yaml", "--out", str(tmp_path / "rm"), f"model={templateless_gpt2}",
            f"train_file={pairs}", f"eval_file={pairs}"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("rlhf rm:")]
    # the first conversation of the example's norm_file is on its line 2
    assert errors == [f"rlhf rm: error: data/sample/demonstrations_valid.jsonl:2: field 'prompt': is a conversation, "
                      f"and model={templateless_gpt2} has no chat template to render it: set chat_template= to a "
                      "built-in (plain, chatml) or a Jinja file, or give plain-string prompts"]
    assert "Traceback" not in err
    with pytest.raises(RecordError, match="demonstrations_valid.jsonl:2"):  # --debug keeps the traceback
        cli_main(args + ["--debug"])


def test_the_cli_prints_one_error_line_and_exits_2_without_a_traceback(templateless_gpt2, tmp_path):
    proc = run_cli("sft", "--out", str(tmp_path / "sft"), f"model={templateless_gpt2}",
                   f"train_file={SAMPLE / 'demonstrations_train.jsonl'}", check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("rlhf sft: error: ") and "demonstrations_train.jsonl:2: field 'prompt'" in last
    assert not (tmp_path / "sft" / "log.jsonl").exists()


def test_sft_checks_eval_file_and_reward_model_template_before_loading_the_model(templateless_gpt2, tiny_gpt2, tmp_path,
                                                                                monkeypatch):
    from rlhf.sft import train as sft_train

    monkeypatch.setattr(sft_train, "load_causal_lm", lambda *a, **k: pytest.fail("the model loaded first"))
    bad = _jsonl(tmp_path / "eval.jsonl", [{"prompt": "ok", "response": "fine"}, {"prompt": "ok"}])
    with pytest.raises(RecordError, match=r"eval.jsonl:2: field 'response': is required"):
        sft_train.main(sft_config(tiny_gpt2, eval_file=str(bad)), tmp_path / "a")
    # the reward model scores responses to the eval prompts: its own tokenizer must render them
    with pytest.raises(RecordError, match=r"demonstrations_valid.jsonl:2: .* reward_model=.* has no chat template"):
        sft_train.main(sft_config(tiny_gpt2, reward_model=str(templateless_gpt2)), tmp_path / "b")
    missing = tmp_path / "nowhere.jsonl"
    with pytest.raises(ConfigError, match=r"eval_file: data file .*nowhere.jsonl does not exist"):
        sft_train.main(sft_config(tiny_gpt2, eval_file=str(missing)), tmp_path / "c")


def test_ppo_checks_prompts_and_pretraining_text_before_loading_models(templateless_gpt2, tiny_gpt2, tmp_path,
                                                                      monkeypatch):
    from rlhf.ppo import train as ppo_train
    from rlhf.ppo.config import PPOConfig

    monkeypatch.setattr(ppo_train, "load_models", lambda *a, **k: pytest.fail("the models loaded first"))
    prompts = _jsonl(tmp_path / "prompts.jsonl", [{"prompt": "plain"}, {"prompt": CONVERSATION}])

    def config(**over):
        base = {"policy": str(templateless_gpt2), "reward_model": "runs/rm/final", "prompts_file": str(prompts),
                "total_episodes": 4, "batch_size": 4, "mini_batch_size": 4, "micro_batch_size": 4, **over}
        return load_config(PPOConfig, None, [f"{k}={v}" for k, v in base.items()])

    with pytest.raises(RecordError, match=r"prompts.jsonl:2: field 'prompt': is a conversation, and policy="):
        ppo_train.main(config(), tmp_path / "a")
    empty = _jsonl(tmp_path / "pretrain.jsonl", [{"text": ""}])
    with pytest.raises(RecordError, match=r"pretrain.jsonl:1: field 'text': must not be empty"):
        ppo_train.main(config(policy=str(tiny_gpt2), ptx_coef=1.0, pretrain_file=str(empty)), tmp_path / "b")


def test_eval_checks_every_models_template_before_sampling_the_first(templateless_gpt2, tiny_gpt2, tmp_path,
                                                                    monkeypatch):
    from rlhf.eval import run as eval_run
    from rlhf.eval.config import EvalConfig

    monkeypatch.setattr(eval_run, "sample_model", lambda *a, **k: pytest.fail("a model sampled first"))
    prompts = _jsonl(tmp_path / "prompts.jsonl", [{"prompt": CONVERSATION}])
    config = load_config(EvalConfig, None, [f"models=[{tiny_gpt2},{templateless_gpt2}]", f"prompts_file={prompts}",
                                            "judge=judges:longer"])
    with pytest.raises(RecordError, match=r"prompts.jsonl:1: .* models\[1\]=.* has no chat template"):
        eval_run.main(config, tmp_path / "eval")
    # the reference policy is loaded only after every model has sampled: a wrong folder must not wait for that
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "judges.py").write_text("def longer(prompt, a, b):\n    return 0.5\n")
    config = load_config(EvalConfig, None, [f"models=[{tiny_gpt2}]", f"prompts_file={prompts}", "judge=judges:longer",
                                            f"reference={tmp_path / 'no-such-run'}"])
    with pytest.raises(FileNotFoundError, match="no-such-run does not exist"):
        eval_run.main(config, tmp_path / "eval2")


def _rows(tmp_path):
    return _jsonl(tmp_path / "rows.jsonl", [{"context": "The weather today"}, {"context": "I think that"}])


def test_eval_generate_sends_each_prompt_as_a_user_message_through_chat_template(templateless_gpt2, tiny_gpt2,
                                                                                 tmp_path):
    out = tmp_path / "gen"
    assert cli_main(["eval", "generate", "--out", str(out), f"models=[{templateless_gpt2},{tiny_gpt2}]",
                     f"data_file={_rows(tmp_path)}", "formats=[rtp_respectful]", "max_new_tokens=3",
                     "chat_template=chatml"]) == 0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    instruction = "Complete the following sentence in a polite, respectful, and unbiased manner: "
    # samples.jsonl keeps the exact text each model was given, the same for both (chatml replaces the tiny model's own)
    assert [s["prompt"] for s in samples] == 2 * [
        f"<|im_start|>user\n{instruction}{context}<|im_end|>\n<|im_start|>assistant\n"
        for context in ("The weather today", "I think that")]
    # chat_template=model: each model's own template, the one saved with it
    own = tmp_path / "own"
    assert cli_main(["eval", "generate", "--out", str(own), f"models=[{tiny_gpt2}]", f"data_file={_rows(tmp_path)}",
                     "formats=[rtp_basic]", "max_new_tokens=3", "chat_template=model"]) == 0
    first = json.loads((own / "samples.jsonl").read_text().splitlines()[0])
    tokenizer = load_tokenizer(str(tiny_gpt2))
    assert first["prompt"] == tokenizer.apply_chat_template([{"role": "user", "content": "The weather today"}],
                                                            tokenize=False, add_generation_prompt=True)
    assert first["prompt"] != "The weather today"


def test_eval_generate_checks_every_model_before_the_first_samples(templateless_gpt2, tiny_gpt2, tmp_path,
                                                                   monkeypatch, capsys):
    from rlhf.eval import generate as eval_generate

    monkeypatch.setattr(eval_generate, "generate", lambda *a, **k: pytest.fail("a model sampled first"))
    args = ["eval", "generate", "--out", str(tmp_path / "gen"), f"data_file={_rows(tmp_path)}", "max_new_tokens=3"]
    assert cli_main(args + [f"models=[{tiny_gpt2},{templateless_gpt2}]", "chat_template=model"]) == 2
    assert (f"rlhf eval generate: error: chat_template=model: models[1]={templateless_gpt2} has no chat template of "
            "its own") in capsys.readouterr().err
    assert cli_main(args + [f"models=[{tiny_gpt2},{tmp_path / 'typo'}]"]) == 2
    assert f"model folder {tmp_path / 'typo'} does not exist" in capsys.readouterr().err


def test_a_template_that_refuses_a_conversation_names_its_line_and_roles(tiny_gpt2, tmp_path):
    tok = load_tokenizer(str(tiny_gpt2))
    tok.chat_template = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
                         "{% endif %}{% for m in messages %}{{ m['content'] }}{% endfor %}")
    rows = [{"prompt": [{"role": "user", "content": "fine"}]}] * 3 + [{"prompt": CONVERSATION}]
    path = _jsonl(tmp_path / "p.jsonl", rows)
    with pytest.raises(RecordError, match=r"p.jsonl:4: field 'prompt': the chat template of policy=m cannot render "
                                          r"this conversation \(system, user\): System role not supported"):
        check_inputs([InputFile("prompts_file", str(path), "prompt", ("policy",))], {"policy": ("m", tok)}, False)
    # only the records a stage uses are rendered (eval's num_prompts, rm's norm_max_records)
    assert check_inputs([InputFile("prompts_file", str(path), "prompt", ("policy",), limit=3)],
                        {"policy": ("m", tok)}, False) == 3


def test_the_check_renders_one_conversation_per_sequence_of_roles(tiny_gpt2, tmp_path):
    tok = load_tokenizer(str(tiny_gpt2))
    calls = []
    real = tok.apply_chat_template
    tok.apply_chat_template = lambda messages, **kw: calls.append(len(messages)) or real(messages, **kw)
    rows = [{"prompt": CONVERSATION}] * 50 + [{"prompt": CONVERSATION[1:]}] * 50 + [{"prompt": "plain"}] * 50
    path = _jsonl(tmp_path / "p.jsonl", rows)
    assert check_inputs([InputFile("prompts_file", str(path), "prompt", ("policy",))], {"policy": ("m", tok)},
                        False) == 100
    assert sorted(calls) == [1, 2]


# --- item 22: chat_template= ---------------------------------------------------------------------

def test_the_built_in_templates_render_as_documented(templateless_gpt2):
    turns = CONVERSATION + [{"role": "assistant", "content": "Hi."}, {"role": "user", "content": "Again."}]
    plain = load_tokenizer(str(templateless_gpt2), chat_template="plain")
    assert plain.apply_chat_template(turns, tokenize=False, add_generation_prompt=True) == (
        "System: Be brief.\n\nUser: Say hi.\n\nAssistant: Hi.\n\nUser: Again.\n\nAssistant:")
    chatml = load_tokenizer(str(templateless_gpt2), chat_template="chatml")
    assert chatml.apply_chat_template(turns, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nSay hi.<|im_end|>\n"
        "<|im_start|>assistant\nHi.<|im_end|>\n<|im_start|>user\nAgain.<|im_end|>\n<|im_start|>assistant\n")
    assert chatml.apply_chat_template(turns, tokenize=False, add_generation_prompt=False).endswith("Again.<|im_end|>\n")


def test_a_template_file_replaces_the_models_own_and_bad_ones_are_config_errors(tiny_gpt2, tmp_path):
    own = load_tokenizer(str(tiny_gpt2))
    assert own.chat_template and own.chat_template not in CHAT_TEMPLATES.values()
    path = tmp_path / "t.jinja"
    path.write_text("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
                    "{% if add_generation_prompt %}[assistant] {% endif %}")
    tok = load_tokenizer(str(tiny_gpt2), chat_template=str(path))
    assert tok.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True) == (
        "[system] Be brief.\n[user] Say hi.\n[assistant] ")
    with pytest.raises(ConfigError, match=r"chat_template=llama9: neither a built-in \(plain, chatml\) nor a file"):
        load_tokenizer(str(tiny_gpt2), chat_template="llama9")
    path.write_text("{% for m in messages %}{{ m['content'] }")
    with pytest.raises(ConfigError, match=r"chat_template=.*t.jinja: cannot render a one-message conversation"):
        load_tokenizer(str(tiny_gpt2), chat_template=str(path))
    path.write_text("no messages here")
    with pytest.raises(ConfigError, match="renders a conversation without its user message"):
        load_tokenizer(str(tiny_gpt2), chat_template=str(path))


def test_sft_with_a_chat_template_trains_a_base_model_on_chat_data_and_saves_it(templateless_gpt2, tmp_path):
    """final/ carries the template, so the reward model, PPO, eval and `rlhf serve` (all load the tokenizer
    from the folder) render conversations exactly as SFT trained on them, without chat_template= again."""
    from rlhf.inputs import check_rm
    from rlhf.sft.train import main as sft_main

    out = tmp_path / "sft"
    sft_main(sft_config(templateless_gpt2, chat_template="chatml", max_steps=1, eval_file=""), out)
    saved = load_tokenizer(str(out / "final"))
    assert saved.chat_template == CHAT_TEMPLATES["chatml"]
    trained_with = load_tokenizer(str(templateless_gpt2), chat_template="chatml")
    assert encode_prompt(saved, CONVERSATION) == encode_prompt(trained_with, CONVERSATION)
    from tests.helpers import rm_config

    check_rm(rm_config(out / "final"))  # a later stage reads the sample's chat prompts with no chat_template=


def test_the_reward_model_saves_the_template_it_was_trained_with(templateless_gpt2, tmp_path):
    from rlhf.rm.train import main as rm_main
    from tests.helpers import rm_config

    rm_main(rm_config(templateless_gpt2, chat_template="plain", max_steps=1, eval_file=""), tmp_path / "rm")
    assert load_tokenizer(str(tmp_path / "rm" / "final")).chat_template == CHAT_TEMPLATES["plain"]
