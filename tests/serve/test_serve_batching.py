"""Concurrent clients share batches yet each gets its own, correct answer."""

from __future__ import annotations

import threading

import openai

from tests.serve.conftest import Gate

PROMPTS = [
    "the quick brown fox", "hello world", "list five ideas for how to regain enthusiasm",
    "summarize the text in one sentence", "write a short story about a bear", "0 1 2 3",
    "a model follows the instruction", "yes no good bad",
]


def test_concurrent_clients_get_the_answer_they_would_get_alone(serve, reference):
    server = serve(max_batch_size=8)
    engine = server.state.engine
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=120)
    answers: dict[int, tuple[str, str]] = {}
    # Hold the engine on a plug request while the eight clients queue, so that they share the next
    # batch whatever the timing of their arrival.
    gate = Gate(engine)
    plug = threading.Thread(target=lambda: client.completions.create(model="tiny", prompt="plug", max_tokens=1))
    gate.hold(plug.start)

    def ask(i: int) -> None:
        max_tokens = 4 + 2 * i  # different lengths share a batch: rows finish at different steps
        if i % 2:
            out = client.completions.create(model="tiny", prompt=PROMPTS[i], max_tokens=max_tokens, temperature=0)
            answers[i] = (out.choices[0].text, reference(PROMPTS[i], max_tokens))
        else:
            messages = [{"role": "user", "content": PROMPTS[i]}]
            stream = client.chat.completions.create(model="tiny", messages=messages, max_tokens=max_tokens,
                                                    temperature=0, stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            answers[i] = (text, reference(messages, max_tokens))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    gate.wait_until(lambda: engine.waiting() == len(PROMPTS))
    gate.open()
    for t in threads + [plug]:
        t.join(timeout=120)
    assert sorted(answers) == list(range(len(PROMPTS)))
    for i, (got, alone) in answers.items():
        assert got == alone, f"client {i}: {got!r} != {alone!r}"
    assert [len(jobs) for jobs in gate.batches] == [1, len(PROMPTS)]  # all eight shared one forward pass
