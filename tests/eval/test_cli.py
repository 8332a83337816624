"""The eval subcommands: documented keys, --help, and `rlhf eval <sub>` dispatch."""

import pytest

from rlhf.cli import STAGES
from rlhf.cli import main as cli
from rlhf.config import describe
from rlhf.eval.config import EvalConfig, GenerateConfig, ReportConfig, ScoreConfig, TaxConfig


def test_every_eval_config_field_is_documented():
    for cls in (EvalConfig, ReportConfig, ScoreConfig, GenerateConfig, TaxConfig):
        missing = [key for key, _, doc in describe(cls) if not doc]
        assert not missing, f"{cls.__name__} fields without a docstring: {missing}"


@pytest.mark.parametrize("sub", ["report", "score", "generate", "tax"])
def test_subcommand_help(sub, capsys):
    assert f"eval {sub}" in STAGES
    with pytest.raises(SystemExit) as e:
        cli(["eval", sub, "--help"])
    assert e.value.code == 0
    assert f"usage: rlhf eval {sub}" in capsys.readouterr().out


def test_top_help_lists_the_subcommands(capsys):
    assert cli(["--help"]) == 0
    out = capsys.readouterr().out
    assert "  eval report " in out and "  eval tax " in out
