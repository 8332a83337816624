"""Config: defaults < YAML < key=value, typed, unknown keys refused with a suggestion."""

import pytest

from rlhf.cli import main as cli_main
from rlhf.config import ConfigError, describe, load_config
from rlhf.rm.config import RMConfig
from rlhf.sft.config import SFTConfig


def test_precedence_defaults_yaml_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: m\ntrain_file: t.jsonl\nlr: 0.001\nepochs: 2\nlora:\n  r: 4\n")
    config = load_config(SFTConfig, path, ["epochs=5", "lora.alpha=8", "packing=true"])
    assert config.lr == 0.001  # from YAML
    assert config.epochs == 5.0  # override beats YAML
    assert config.lora.r == 4 and config.lora.alpha == 8.0  # nested from both
    assert config.packing is True
    assert config.max_length == SFTConfig().max_length  # default kept


def test_unknown_key_names_the_closest_valid_one():
    with pytest.raises(ConfigError, match="unknown config key 'learning_rat'.*did you mean"):
        load_config(SFTConfig, None, ["model=m", "train_file=t", "learning_rat=1"])
    with pytest.raises(ConfigError, match=r"lora.rank' \(valid keys: alpha, dropout, r, targets\)"):
        load_config(SFTConfig, None, ["model=m", "train_file=t", "lora.rank=8"])


def test_wrong_types_and_values_are_refused():
    with pytest.raises(ConfigError, match="batch_size: expected an integer"):
        load_config(SFTConfig, None, ["model=m", "train_file=t", "batch_size=big"])
    with pytest.raises(ConfigError, match="multiple of micro_batch_size"):
        load_config(SFTConfig, None, ["model=m", "train_file=t", "batch_size=10", "micro_batch_size=4"])
    with pytest.raises(ConfigError, match="model is required"):
        load_config(RMConfig, None, ["train_file=t"])


def test_lists_parse_from_the_command_line():
    config = load_config(SFTConfig, None, ["model=m", "train_file=t", "lora.targets=[q_proj,v_proj]"])
    assert config.lora.targets == ["q_proj", "v_proj"]


def config_classes() -> list[type]:
    """Every dataclass named *Config in the package, found in the source (so a new one is covered)."""
    import ast
    import importlib
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src"
    found = []
    for path in sorted((src / "rlhf").rglob("*.py")):
        module = ".".join(path.relative_to(src).with_suffix("").parts)
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and node.name.endswith("Config") and any(
                    getattr(d, "id", None) == "dataclass" for d in node.decorator_list):
                found.append(getattr(importlib.import_module(module), node.name))
    return found


def test_every_field_of_every_config_is_documented():
    classes = config_classes()
    assert {"SFTConfig", "RMConfig", "PPOConfig", "EvalConfig", "PrepareConfig"} <= {c.__name__ for c in classes}
    for cls in classes:
        missing = [key for key, _, doc in describe(cls) if not doc]
        assert not missing, f"{cls.__name__} fields without a docstring: {missing}"


def test_help_lists_keys_with_docs(capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["sft", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "lora.r" in out and "Peak learning rate" in out and "packing" in out


def test_cli_reports_config_errors_without_a_traceback(capsys, tmp_path):
    code = cli_main(["rm", "--out", str(tmp_path / "x"), "model=m", "train_file=t", "epoch=1"])
    assert code == 2
    assert "did you mean 'epochs'" in capsys.readouterr().err


def test_exponent_floats_without_a_dot_parse_as_numbers(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: m\ntrain_file: t\nlr: 1e-5\n")
    assert load_config(SFTConfig, path, []).lr == 1e-5
    assert load_config(SFTConfig, path, ["lr=3e-4", "batch_size=64"]).lr == 3e-4


def test_overrides_on_both_sides_of_out_all_count(capsys, tmp_path):
    # Before --out and after it: a key=value on either side reaches the config (here the misspelt one after).
    code = cli_main(["rm", "model=m", "--out", str(tmp_path / "x"), "train_file=t", "epoch=1"])
    assert code == 2
    assert "did you mean 'epochs'" in capsys.readouterr().err


def test_an_error_names_whether_the_bad_key_is_in_the_file_or_on_the_command_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: m\ntrain_file: t\n")
    with pytest.raises(ConfigError, match=r"'threads'.*\(from the command line\)"):
        load_config(SFTConfig, path, ["threads=1"])
    path.write_text("model: m\ntrain_file: t\nthreads: 1\n")
    with pytest.raises(ConfigError, match=rf"'threads'.*\(from {path}\)"):
        load_config(SFTConfig, path, ["epochs=2"])
