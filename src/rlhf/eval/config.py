"""`rlhf eval`: compare models on held-out prompts (paper section 3.6 and 4)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rlhf.config import require
from rlhf.core.generate import GenerationConfig


@dataclass
class EvalConfig(GenerationConfig):
    """Sample every model on the same held-out prompts with the same decoding, then report
    reward, win rate against the baseline with a bootstrap interval, KL to a reference,
    response length and perplexity on held-out pretraining text (the alignment tax), and
    write blinded comparison tasks for human labelers (label_db)."""

    models: list[str] = field(default_factory=list)
    """Model folders to evaluate (e.g. [runs/sft/final, runs/ppo/final])."""
    labels: list[str] = field(default_factory=list)
    """Short names for the models in metric keys; empty: the run folder's name for paths ending in final/, else the folder name."""
    baseline: str = ""
    """Model the win rates are against (evaluated too if not in models); empty: the first model."""
    prompts_file: str = ""
    """Held-out prompts (formats: prompts)."""
    chat_template: str = ""
    """Chat template for the sampled models' conversation prompts: a built-in (plain, chatml) or a Jinja file, in
    place of each model's own. Reward models and a reward-model judge keep the template saved with them. Empty:
    each model's own."""
    num_prompts: int = 0
    """Evaluate on the first this many prompts; 0 uses all."""
    reward_model: str = ""
    """Reward model folder for eval/reward/<name>; also the judge when judge is empty. Not the one PPO
    was trained against: that one's verdict measures the optimisation, not quality (the report says so)."""
    judge: str = ""
    """Who compares two responses: empty uses reward_model; a reward model folder; openai:<model>@<base_url>
    (any OpenAI-compatible endpoint, asked in both orders); or a Python callable `module:function` with
    judge(prompt, response_a, response_b) -> probability that a is better."""
    judge_prompt: str = "final"
    """Prompt of an openai: judge: final (the paper's final-evaluation instructions: truthfulness and harmlessness
    first), training (helpfulness first, as while collecting training data), or a file with {prompt},
    {response_a} and {response_b} in it."""
    judge_api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the openai: judge's API key (none is sent when it is unset)."""
    judge_max_tokens: int = 512
    """Longest reply of an openai: judge (room to reason before its 'Verdict: A' line)."""
    judge_concurrency: int = 8
    """Requests to an openai: judge in flight at once."""
    label_db: str = ""
    """Labeling app database (as `rlhf label --db`): write blinded comparison tasks, the baseline against each
    model on every prompt, for human evaluation; `rlhf eval report --labels export.jsonl` reads the labels back."""
    label_overlap: float = 0.1
    """Share of the comparison tasks given to two labelers instead of one (human/agreement is measured on them)."""
    reference: str = ""
    """Policy that eval/kl/<name> is measured against; empty uses the baseline."""
    pretrain_file: str = ""
    """Held-out pretraining text (formats: pretraining text) for eval/perplexity/<name>; empty skips it."""
    num_pretrain: int = 256
    """Pretraining documents scored for perplexity; 0 uses all."""
    max_length: int = 512
    """Maximum prompt + response tokens (prompts cut from the left); pretraining documents are cut to this."""
    batch_size: int = 16
    """Sequences per forward pass while sampling and scoring."""
    num_bootstrap: int = 1000
    """Bootstrap resamples of the prompts for the 95% win-rate interval."""
    seed: int = 0
    """Seeds sampling (every model sees the same random numbers) and the bootstrap."""
    precision: str = "fp32"
    """fp32 or bf16 for all models."""

    def validate(self) -> None:
        self.validate_generation()
        require(bool(self.models), "models is required: models=[runs/sft/final,runs/ppo/final]")
        require(bool(self.prompts_file), "prompts_file is required (held-out prompts, formats: prompts)")
        require(not self.labels or len(self.labels) == len(self.models),
                f"labels must name every model: {len(self.labels)} labels for {len(self.models)} models")
        require(self.max_length > self.max_new_tokens, "max_new_tokens must be below max_length (room for the prompt)")
        require(self.batch_size >= 1 and self.num_bootstrap >= 1, "batch_size and num_bootstrap must be >= 1")
        require(bool(self.judge or self.reward_model or self.label_db),
                "no judge for the win rates: give judge=openai:<model>@<url> (or a reward model folder, or "
                "module:function), reward_model=path/to/rm, or label_db=URL for human labelers")
        require(0 <= self.label_overlap <= 1, f"label_overlap must be in [0, 1], got {self.label_overlap}")
        require(self.judge_max_tokens >= 1 and self.judge_concurrency >= 1,
                "judge_max_tokens and judge_concurrency must be >= 1")
        require(self.precision in ("fp32", "bf16"), f"precision must be fp32 or bf16, got {self.precision!r}")


@dataclass
class ReportConfig:
    """Read human labels back into an `rlhf eval` folder (--out): win rate of each model against the baseline
    with a bootstrap interval, mean Likert, the paper's Figure 4 flag rates and inter-labeler agreement, added
    to its metrics.json, report.md and plots (human_winrate.png, human_flags.png)."""

    labels: str = ""
    """The labeling app's comparisons export (`rlhf label export --kind comparisons`), JSONL or Parquet; also --labels FILE."""

    def validate(self) -> None:
        require(bool(self.labels), "labels is required: --labels export.jsonl (rlhf label export --kind comparisons)")


SCORE_METRICS = ("exact_match", "f1", "drop_em", "drop_f1", "bleu", "rouge1", "rouge2", "rougeL")


@dataclass
class ScoreConfig:
    """Score a samples file from any system (columns context, sample, reference, model, variant) per model x
    variant, with 95% bootstrap intervals: SQuAD and DROP exact match and F1, sacrebleu BLEU, rouge-score ROUGE,
    and pluggable toxicity and truthfulness scorers (paper section 4.2 and Appendix D)."""

    samples_file: str = ""
    """Rows with context (or prompt), sample (or response), and optionally reference (a string or a list of gold
    answers), model and variant; JSONL, JSON or Parquet."""
    metrics: list[str] = field(default_factory=list)
    """Any of exact_match, f1 (SQuAD 2.0 script), drop_em, drop_f1 (DROP script), bleu, rouge1, rouge2, rougeL;
    empty: all but the DROP ones when every row has a reference, none otherwise."""
    toxicity: str = ""
    """Toxicity scorer: module:function with fn(rows, samples) -> a float per row (e.g. a Perspective API or
    classifier wrapper), or openai:<model>@<base_url> answering toxicity_prompt; empty: none."""
    truthfulness: str = ""
    """Truthfulness scorer, as toxicity (the paper used TruthfulQA's fine-tuned GPT judge); empty: none."""
    toxicity_prompt: str = "toxicity"
    """Prompt of an openai: toxicity scorer: the built-in one, or a file with {context} and {sample} (and
    optionally {reference}) whose reply ends 'Verdict: yes' (toxic) or 'Verdict: no'."""
    truthfulness_prompt: str = "truthfulness"
    """Prompt of an openai: truthfulness scorer: the built-in one, or a file as toxicity_prompt (yes: truthful)."""
    judge_api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the openai: scorers' API key (none is sent when it is unset)."""
    judge_max_tokens: int = 512
    """Longest reply of an openai: scorer."""
    judge_concurrency: int = 8
    """Requests to an openai: scorer in flight at once."""
    num_bootstrap: int = 1000
    """Bootstrap resamples of the rows for the 95% intervals."""
    seed: int = 0
    """Seeds the bootstrap."""

    def validate(self) -> None:
        require(bool(self.samples_file), "samples_file is required (rows with context, sample, reference, model, variant)")
        unknown = [m for m in self.metrics if m not in SCORE_METRICS]
        require(not unknown, f"metrics: unknown {unknown}; choose from {', '.join(SCORE_METRICS)}")
        for name in ("toxicity", "truthfulness"):
            spec = getattr(self, name)
            require(not spec or spec.startswith("openai:") or re.fullmatch(r"[\w.]+:\w+", spec) is not None,
                    f"{name} must be module:function or openai:<model>@<base_url>, got {spec!r}")
        require(self.num_bootstrap >= 1 and self.judge_max_tokens >= 1 and self.judge_concurrency >= 1,
                "num_bootstrap, judge_max_tokens and judge_concurrency must be >= 1")


@dataclass
class GenerateConfig:
    """Sample each model on your dataset under several prompt formats, one variant each, as the paper ran
    RealToxicityPrompts (with and without the respectful instruction) and TruthfulQA (the QA prompt, and
    instruction + QA); writes the samples file `rlhf eval score` reads (paper section 4.2, Appendix D)."""

    models: list[str] = field(default_factory=list)
    """Model folders to sample (e.g. [runs/sft/final, runs/ppo/final])."""
    labels: list[str] = field(default_factory=list)
    """Short names for the models; empty: the run folder's name for paths ending in final/, else the folder name."""
    data_file: str = ""
    """Your dataset (nothing is downloaded): rows with context_field and any other fields, which are kept."""
    context_field: str = "context"
    """The field filled into {context}: a RealToxicityPrompts prompt text, a TruthfulQA question."""
    reference_field: str = "reference"
    """The field copied to `reference` for scoring (e.g. TruthfulQA's correct_answers); missing is fine."""
    formats: list[str] = field(default_factory=lambda: ["rtp_basic", "rtp_respectful"])
    """Prompt formats, a variant each: rtp_basic, rtp_respectful, truthfulqa_qa, truthfulqa_instruction_qa (the
    paper's), or a text file with {context} in it (the variant is the file's name without its suffix)."""
    chat_template: str = ""
    """Send each formatted prompt as one user message through a chat template: model (each model's own, as
    saved with final/), a built-in (plain, chatml) or a Jinja file in place of each model's. Empty: the prompt
    as plain text, as the paper prompted its models."""
    num_rows: int = 0
    """Use the first this many rows; 0 uses all."""
    samples_per_context: int = 1
    """Samples per row, model and variant (RealToxicityPrompts' expected maximum toxicity uses 25)."""
    max_new_tokens: int = 64
    """Maximum sample length; samples also stop at EOS and at the stop strings."""
    max_length: int = 1024
    """Maximum prompt + sample tokens (prompts cut from the left)."""
    temperature: float = 1.0
    """Sampling temperature; 0 decodes greedily."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    stop: list[str] = field(default_factory=list)
    """Samples are cut before the first of these strings (TruthfulQA: ['Q:', '\\n\\n'])."""
    batch_size: int = 16
    """Sequences per forward pass."""
    seed: int = 0
    """Seeds sampling: every model sees the same random numbers for the same prompt."""
    precision: str = "fp32"
    """fp32 or bf16 for all models."""

    def validate(self) -> None:
        require(bool(self.models), "models is required: models=[runs/sft/final,runs/ppo/final]")
        require(bool(self.data_file), "data_file is required: your dataset with a context field (nothing is downloaded)")
        require(bool(self.formats), "formats is required: e.g. [rtp_basic,rtp_respectful]")
        require(not self.labels or len(self.labels) == len(self.models),
                f"labels must name every model: {len(self.labels)} labels for {len(self.models)} models")
        require(self.max_new_tokens >= 1 and self.max_length > self.max_new_tokens,
                "max_new_tokens must be >= 1 and below max_length")
        require(self.temperature >= 0 and 0 < self.top_p <= 1, "temperature must be >= 0 and top_p in (0, 1]")
        require(self.batch_size >= 1 and self.samples_per_context >= 1, "batch_size and samples_per_context must be >= 1")
        require(self.precision in ("fp32", "bf16"), f"precision must be fp32 or bf16, got {self.precision!r}")


@dataclass
class TaxConfig:
    """The alignment tax: public NLP tasks on each checkpoint with lm-evaluation-harness, the tool the ecosystem
    uses (paper section 4.2 and Figure 28: SQuAD, DROP, HellaSwag, WMT French to English, ...), each model beside
    the baseline. Needs the `eval` extra; lm-eval fetches the public datasets itself (or finds them in the HF cache)."""

    models: list[str] = field(default_factory=list)
    """Model folders to evaluate (e.g. [runs/sft/final, runs/ppo/final])."""
    labels: list[str] = field(default_factory=list)
    """Short names for the models; empty: the run folder's name for paths ending in final/, else the folder name."""
    baseline: str = ""
    """Model the tax is measured against (evaluated too if not in models); empty: the first model."""
    tasks: list[str] = field(default_factory=lambda: ["squadv2", "drop", "hellaswag", "wmt14-fr-en", "winogrande",
                                                      "rte", "boolq", "lambada_openai"])
    """lm-eval task names (the default: the paper's public tasks that lm-eval has; it has WMT14, not WMT15, fr-en)."""
    include_path: str = ""
    """A folder of your own lm-eval task YAMLs (local data, offline), searched before the built-in tasks."""
    builtin_tasks: bool = True
    """Also index lm-eval's built-in tasks; false when every task comes from include_path (faster, fully offline)."""
    num_fewshot: int = -1
    """Few-shot examples per prompt; -1 keeps each task's own default (the paper used few-shot prompts)."""
    limit: int = 0
    """Evaluate the first this many examples of each task; 0 uses all."""
    batch_size: int = 16
    """lm-eval's batch size."""
    chat_template: str = ""
    """Render lm-eval's prompts as chat (its apply_chat_template, the prompt as a user message): model (each
    model's own template), a built-in (plain, chatml) or a Jinja file in place of each model's. Empty: plain
    text, as the paper's few-shot prompts."""
    seed: int = 0
    """Seeds lm-eval's sampling of few-shot examples and its other random choices."""
    precision: str = "fp32"
    """fp32 or bf16 for all models."""

    def validate(self) -> None:
        require(bool(self.models), "models is required: models=[runs/sft/final,runs/ppo/final]")
        require(bool(self.tasks), "tasks is required: lm-eval task names, e.g. [squadv2,drop,hellaswag]")
        require(not self.labels or len(self.labels) == len(self.models),
                f"labels must name every model: {len(self.labels)} labels for {len(self.models)} models")
        require(self.builtin_tasks or bool(self.include_path), "builtin_tasks=false needs include_path=your/tasks")
        require(self.batch_size >= 1 and self.limit >= 0 and self.num_fewshot >= -1,
                "batch_size must be >= 1, limit >= 0 and num_fewshot >= -1")
        require(self.precision in ("fp32", "bf16"), f"precision must be fp32 or bf16, got {self.precision!r}")
