"""Every input file of a training or eval stage, read and checked before its first step.

A stage used to read some of its files late: `rlhf rm` read `norm_file` after
training, so a file whose chat prompts the tokenizer could not render failed at
the very end. Each stage's setup now calls its `check_<stage>` here, which reads
every file the run will read, validates every record (formats.md), and renders
each conversation prompt with every tokenizer that will render it: a missing
chat template, or a template that refuses a conversation's roles, stops the run
before training with the file, line and model. One conversation per sequence
of roles is rendered per tokenizer (templates check roles, not content), so the
check costs a read of the files, not a pass of the tokenizer.

The files are read again when the stage loads them; the check keeps nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rlhf.config import ConfigError
from rlhf.data.files import iter_numbered_records
from rlhf.data.records import RecordError

log = logging.getLogger("rlhf")


@dataclass
class InputFile:
    key: str
    """The config key that names the file, for messages."""
    path: str
    kind: str
    """Its record kind (formats.md)."""
    renderers: tuple[str, ...] = ()
    """Config keys of the models whose tokenizers render its prompts."""
    limit: int = 0
    """Only the first this-many records are used, so only they are rendered; 0: all."""


def check_inputs(files: list[InputFile], tokenizers: dict[str, tuple[str, object]], skip_bad_records: bool) -> int:
    """Read and check each file; `tokenizers` maps a model's config key to (its path, its tokenizer).
    Returns how many conversation prompts the files hold."""
    return sum(_check_file(spec, tokenizers, skip_bad_records) for spec in files if spec.path)


def _check_file(spec: InputFile, tokenizers: dict, skip_bad_records: bool) -> int:
    rendered: set[tuple] = set()  # (model key, roles) already rendered
    count = conversations = 0
    try:
        for line, record in iter_numbered_records(spec.path, spec.kind, skip_bad_records=skip_bad_records):
            count += 1
            prompt = record.get("prompt")
            if isinstance(prompt, list) and (not spec.limit or count <= spec.limit):
                conversations += 1
                roles = tuple(m["role"] for m in prompt)
                for key in spec.renderers:
                    if (key, roles) not in rendered:
                        rendered.add((key, roles))
                        _render(spec, line, prompt, key, *tokenizers[key])
    except FileNotFoundError as e:
        raise ConfigError(f"{spec.key}: {e}") from None
    if count == 0:
        raise RecordError(spec.path, 0, "<file>", f"holds no valid {spec.kind} records ({spec.key})")
    return conversations


def _render(spec: InputFile, line: int, prompt: list[dict], key: str, model_path: str, tokenizer) -> None:
    from rlhf.core.tokens import CHAT_TEMPLATES

    if not getattr(tokenizer, "chat_template", None):
        raise RecordError(spec.path, line, "prompt", f"is a conversation, and {key}={model_path} has no chat template "
                          f"to render it: set chat_template= to a built-in ({', '.join(CHAT_TEMPLATES)}) or a Jinja "
                          "file, or give plain-string prompts")
    try:
        tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    except Exception as e:  # jinja2's TemplateError, or raise_exception() in the template ("roles must alternate")
        roles = ", ".join(m["role"] for m in prompt)
        raise RecordError(spec.path, line, "prompt", f"the chat template of {key}={model_path} cannot render this "
                          f"conversation ({roles}): {e}") from None


def _tokenizer(path: str, chat_template: str = ""):
    from rlhf.core.models import load_tokenizer

    return path, load_tokenizer(path, chat_template=chat_template)


def _reward_tokenizer(spec: str):
    """A reward model's tokenizer; an ensemble's ("a,b") is its first member's (load_reward_model checks the rest)."""
    from rlhf.core.reward import reward_model_paths

    return _tokenizer(reward_model_paths(spec)[0])


def check_sft(config, tokenizer) -> None:
    """train_file and eval_file are rendered by the model; eval_file's prompts also by reward_model, which
    scores the responses to them when given; pretrain_file when the pretraining mix is on."""
    tokenizers = {"model": (config.model, tokenizer)}
    eval_renderers = ("model",)
    if config.reward_model:
        tokenizers["reward_model"] = _reward_tokenizer(config.reward_model)  # keeps the template it was trained with
        eval_renderers += ("reward_model",)
    check_inputs([
        InputFile("train_file", config.train_file, "demonstration", ("model",)),
        InputFile("eval_file", config.eval_file, "demonstration", eval_renderers),
        InputFile("pretrain_file", config.pretrain_file if config.ptx_coef > 0 else "", "pretrain"),
    ], tokenizers, config.skip_bad_records)


def check_rm(config) -> None:
    """train_file, eval_file and norm_file (scored after training, to set the offset) by the model."""
    tokenizer = _tokenizer(config.model, config.chat_template)[1]
    check_inputs([
        InputFile("train_file", config.train_file, "comparison", ("model",)),
        InputFile("eval_file", config.eval_file, "comparison", ("model",)),
        InputFile("norm_file", config.norm_file, "demonstration", ("model",), limit=config.norm_max_records),
    ], {"model": (config.model, tokenizer)}, config.skip_bad_records)


def check_ppo(config, tokenizer) -> None:
    """prompts_file by the policy (the reward model reads the policy's tokens), pretrain_file when ptx is on."""
    conversations = check_inputs([
        InputFile("prompts_file", config.prompts_file, "prompt", ("policy",)),
        InputFile("pretrain_file", config.pretrain_file if config.ptx_coef > 0 else "", "pretrain"),
    ], {"policy": (config.policy, tokenizer)}, config.skip_bad_records)
    if conversations and not config.reward_fn:
        reward_tokenizer = _reward_tokenizer(config.reward_model)[1]
        if getattr(tokenizer, "chat_template", None) != getattr(reward_tokenizer, "chat_template", None):
            log.warning("the policy's chat template differs from the reward model's: the reward model will score "
                        "conversations rendered the policy's way, not the way it was trained on")


def check_eval(config, paths: list[str], judge_folder: str) -> None:
    """prompts_file by every model sampled (chat_template applies to them) and by the reward model and a
    reward-model judge (`judge_folder`, each with its own template); pretrain_file as pretraining text; the
    reference folder, loaded only after every model has sampled."""
    from rlhf.core.models import model_source

    keys = [f"models[{i}]" if i < len(config.models) else "baseline" for i in range(len(paths))]
    tokenizers = {key: _tokenizer(path, config.chat_template) for key, path in zip(keys, paths)}
    if config.reward_model:
        tokenizers["reward_model"] = _reward_tokenizer(config.reward_model)
    if judge_folder and judge_folder != config.reward_model:
        tokenizers["judge"] = _reward_tokenizer(judge_folder)
    if config.reference:
        model_source(config.reference)
    check_inputs([
        InputFile("prompts_file", config.prompts_file, "prompt", tuple(tokenizers), limit=config.num_prompts),
        InputFile("pretrain_file", config.pretrain_file, "pretrain"),
    ], tokenizers, skip_bad_records=False)


def prompt_tokenizers(models: list[str], chat_template: str) -> list:
    """The tokenizers of `rlhf eval generate` and `eval tax`, whose prompts are plain text: with a chat_template
    each prompt becomes one user message, rendered by each model's own template (chat_template=model) or by a
    built-in or a Jinja file in place of it. Every model is loaded here, before the first one samples, so a
    wrong folder or a missing template in the last model is found in seconds, not after the others ran."""
    from rlhf.core.tokens import CHAT_TEMPLATES, check_renders_a_user_message

    own = chat_template == "model"
    tokenizers = []
    for i, path in enumerate(models):
        tokenizer = _tokenizer(path, "" if own else chat_template)[1]
        if own and not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"chat_template=model: models[{i}]={path} has no chat template of its own; give a "
                              f"built-in ({', '.join(CHAT_TEMPLATES)}) or a Jinja file instead")
        if own:
            check_renders_a_user_message(tokenizer, f"chat_template=model: the template of models[{i}]={path}")
        tokenizers.append(tokenizer)
    return tokenizers
