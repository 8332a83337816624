"""The flywheel end to end: serve a tiny model, users send prompts, prepare them,
hand them to PPO (its prompts reader) and to the labeling app (import-prompts)."""

from __future__ import annotations

import json

import openai
import pytest

from rlhf.cli import main as rlhf_main

USERS = {"sk-user-a-0000000": "u-a", "sk-user-b-0000000": "u-b", "sk-user-c-0000000": "u-c"}


@pytest.mark.slow
def test_served_prompts_become_prepared_training_prompts(serve, tmp_path, tiny_gpt2, capsys):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(USERS))
    server = serve(keys=str(keys), log_prompts=str(tmp_path / "prompts.db"))
    clients = {user: openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=60)
               for key, user in USERS.items()}

    for i in range(4):  # u-a: four prompts sharing their first 64 characters, then three more
        prompt = "Write a short story about a bear who goes to the beach and makes friends " + "x" * i
        clients["u-a"].completions.create(model="tiny", prompt=prompt, max_tokens=2)
    for i in range(3):
        clients["u-a"].completions.create(model="tiny", prompt=f"What is {i} plus {i}?", max_tokens=2)
    clients["u-b"].chat.completions.create(model="tiny", max_tokens=2, messages=[
        {"role": "user", "content": "Hi, my name is Zorblax, email me at zorb@example.com about my order"}])
    clients["u-b"].completions.create(model="tiny", prompt="List five ideas for my career", max_tokens=2)
    clients["u-c"].completions.create(model="tiny", prompt="Summarize: call 555-123-4567 for details", max_tokens=2,
                                      stream=True).response.read()
    clients["u-c"].completions.create(model="tiny", prompt="this one is private", max_tokens=2,
                                      extra_body={"store": False})

    out = tmp_path / "prepared"
    assert rlhf_main(["data", "prepare", "--in", str(server.state.request_log.path), "--out", str(out),
                      "--max-per-user", "3", "--prefix-chars", "64", "--tag-categories", "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["input"] == 10  # the opted-out prompt never reached the log
    assert report["dropped/prefix_duplicate"] == 3
    assert report["dropped/over_user_cap"] == 1  # u-a's fourth distinct prompt is over the cap of 3
    assert report["pii/name"] == 1 and report["pii/email"] == 1 and report["pii/phone"] == 1
    rows = [json.loads(line) for s in ("train", "valid", "test") for line in (out / f"{s}.jsonl").read_text().splitlines()]
    assert sorted(r["user_id"] for r in rows) == ["u-a"] * 3 + ["u-b"] * 2 + ["u-c"]
    assert all(r["source"] == "customer" and r["category"] for r in rows)
    chat = next(r for r in rows if isinstance(r["prompt"], list))
    assert chat["prompt"] == [{"role": "user", "content": "Hi, my name is [NAME], email me at [EMAIL] about my order"}]
    assert "Summarize: call [PHONE] for details" in [r["prompt"] for r in rows]

    # The prompts file that `rlhf ppo` reads (prompts_file=...): all splits' prompts load and tokenize.
    from rlhf.core.models import load_tokenizer
    from rlhf.ppo.data import load_prompts

    for split in ("train", "valid", "test"):
        if report[f"split/{split}"]:
            prompts = load_prompts(str(out / f"{split}.jsonl"), load_tokenizer(str(tiny_gpt2)), budget=64)
            assert len(prompts.ids) == report[f"split/{split}"] and all(prompts.ids)

    # And into the labeling app as demonstration tasks.
    capsys.readouterr()
    split = next(s for s in ("train", "valid", "test") if report[f"split/{s}"])
    db = f"sqlite:///{tmp_path / 'labels.db'}"
    assert rlhf_main(["label", "import-prompts", "--db", db, str(out / f"{split}.jsonl")]) == 0
    assert str(report[f"split/{split}"]) in capsys.readouterr().out
