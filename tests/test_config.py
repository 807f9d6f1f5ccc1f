from pathlib import Path

import pytest

from jinstruct.run.config import ConfigError, apply_overrides, parse_override
from jinstruct.run.schema import load_config
from jinstruct.paths import configs_dir


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_unknown_key_names_file_key_and_line(tmp_path):
    p = write(tmp_path, "name: t\nseeds:\n  english: sample\n  englsh_limit: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert str(p) in msg and "line 4" in msg and "seeds.englsh_limit" in msg and "unknown key" in msg


def test_wrong_type_names_key(tmp_path):
    p = write(tmp_path, "name: t\nseed: many\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "line 2" in str(e.value) and "'seed'" in str(e.value) and "integer" in str(e.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "name: [unclosed\n"))


def test_overrides_by_dotted_key(tmp_path):
    p = write(tmp_path, "name: t\nseed: 1\n")
    cfg = load_config(p, ["seed=7", "seeds.english_limit=5", "seeds.english=official"])
    assert cfg.seed == 7 and cfg.seeds.english_limit == 5 and cfg.seeds.english == "official"
    cfg = load_config(p, {"seeds.english_limit": 2})
    assert cfg.seeds.english_limit == 2


def test_bad_override_is_named(tmp_path):
    p = write(tmp_path, "name: t\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, ["seeds.nope=1"])
    assert "(override)" in str(e.value) and "seeds.nope" in str(e.value)
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("seed")
    with pytest.raises(ConfigError, match="is a value"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


@pytest.mark.parametrize("path", sorted(configs_dir().glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    cfg = load_config(path)
    assert cfg.name == path.stem, "a config's run name is its file name, so runs/<name>/ is easy to find"
    from jinstruct.run.runner import stage_numbers

    runs = stage_numbers(cfg.stages) if cfg.stages else {1, 2, 5, 6}
    by_stage = {1: {cfg.seeds.endpoint}, 2: {cfg.generate.endpoint}, 6: {cfg.judge.endpoint},
                5: {m.endpoint for m in cfg.answer.models if m.endpoint}}
    named = set().union(*(by_stage[n] for n in runs if n in by_stage))
    assert named <= set(cfg.llm.endpoints), "every endpoint a stage the config runs names is defined"
    trained = {m.name for m in cfg.train.models}
    assert {m.trained for m in cfg.answer.models if m.trained} <= trained


@pytest.mark.parametrize("path", sorted((configs_dir() / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_sweeps_expand_into_valid_configs(path):
    from jinstruct.paths import resolve_path
    from jinstruct.run.sweep import expand, load_sweep

    spec = load_sweep(path)
    runs = expand(spec)
    assert len(runs) == len({r.name for r in runs}) > 1
    for run in runs:
        load_config(resolve_path(spec.config), run.overrides)


@pytest.mark.parametrize("path", sorted((configs_dir() / "train").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_training_jobs_validate(path):
    from jinstruct.train.cli import load_job

    job = load_job(path)
    assert job.base_model and job.out_dir.is_absolute()


@pytest.mark.parametrize("recipe", ["self_instruct", "translate"])
def test_one_override_switches_the_tiny_config_to_any_recipe(recipe):
    from jinstruct.generate.recipes import RECIPES, chosen

    assert recipe in RECIPES
    cfg = load_config(configs_dir() / "tiny.yaml", {"generate.recipe": recipe})
    chosen_recipe, section = chosen(cfg.generate)
    assert chosen_recipe.name == recipe and isinstance(section, RECIPES[recipe].Config)


def test_a_recipe_section_is_typed_and_an_unknown_recipe_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"generate.self_instruct.target"):
        load_config(configs_dir() / "tiny.yaml", {"generate.self_instruct.target": "many"})
    with pytest.raises(ConfigError, match=r"generate.recipe"):
        load_config(configs_dir() / "tiny.yaml", {"generate.recipe": "nope"})
    with pytest.raises(ConfigError, match=r"generate.translate.target.*unknown key"):
        load_config(configs_dir() / "tiny.yaml", {"generate.translate.target": 5})
