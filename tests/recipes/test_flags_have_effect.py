"""No recipe lists a flag that does nothing: for every flag a training recipe's `--help`
shows, changing its value changes the run the recipe builds (the loop's config, with its
dataset builders, teachers and evaluators)."""

from __future__ import annotations

import importlib
import re
import types
from pathlib import Path
from typing import Literal, get_args, get_origin

import chz
import pytest

from tinker_cookbook.recipes.distillation import (
    off_policy_reasoning,
    on_policy_distillation,
    on_policy_distillation_harbor_multi_turn,
    on_policy_multi_teacher,
)
from tinker_cookbook.recipes.harbor_rl import train as harbor_rl_train

RECIPES = {
    "distillation.off_policy_reasoning": off_policy_reasoning,
    "distillation.on_policy_distillation": on_policy_distillation,
    "distillation.on_policy_multi_teacher": on_policy_multi_teacher,
    "distillation.on_policy_distillation_harbor_multi_turn": on_policy_distillation_harbor_multi_turn,
    "harbor_rl.train": harbor_rl_train,
}
# Values a flag can take here without loading anything (builders are built, not called).
OTHER_VALUE = {
    "model_name": "Qwen/Qwen3-4B",
    "renderer_name": "role_colon",
    "log_path": "/tmp/tinker-flags-test/other",
    "load_checkpoint_path": "/tmp/tinker-flags-test/no-such-checkpoint",
    "environment_kwargs": {"cpus": "2"},
    "loss_fn_config": {"clip_low_threshold": 0.5},
}


def help_flags(target: object) -> list[str]:
    """The flag names `--help` lists for a config class or an entry-point function."""
    text = chz.Blueprint(target).get_help()
    section = text.split("Arguments:", 1)[1]
    names = re.findall(r"^  ([\w.]+)\s", section, flags=re.MULTILINE)
    return [n for n in names if not any(m.startswith(n + ".") for m in names)]  # leaves only


def other_value(name: str, field_type: object, value: object) -> object:
    if name in OTHER_VALUE:
        return OTHER_VALUE[name]
    if get_origin(field_type) is Literal:
        return next(v for v in get_args(field_type) if v != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value * 2 + 1
    if isinstance(value, float):
        return value * 2 + 0.5
    if isinstance(value, str):
        return value + "-other"
    if value is None:
        inner = [a for a in get_args(field_type) if a is not type(None)]
        kind = inner[0] if inner else str
        if isinstance(kind, types.GenericAlias) or get_origin(kind) is not None:
            kind = get_origin(kind)
        return {int: 3, float: 0.25, str: "/tmp/tinker-flags-test/value", bool: True}[kind]
    raise AssertionError(f"no other value for flag {name} = {value!r}")


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_every_listed_flag_changes_the_run(recipe, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    module = RECIPES[recipe]
    cli_class = module.CLIConfig
    base = chz.Blueprint(cli_class).make_from_argv([f"log_path={tmp_path}/run"])
    reference = module.build_config(base)
    fields = chz.chz_fields(cli_class)
    flags = help_flags(cli_class)
    assert set(flags) == set(fields)
    without_effect = []
    for name in flags:
        value = getattr(base, name)
        changed = chz.replace(base, **{name: other_value(name, fields[name].final_type, value)})
        if module.build_config(changed) == reference:
            without_effect.append(name)
    assert not without_effect, f"{recipe}: flags listed by --help with no effect: {without_effect}"


# Entry points without a `build_config` (they run right away): each flag `--help` lists must
# at least be read somewhere in the recipe's own code.
RUNNERS = {
    "first_lora_run": ("tinker_cookbook.recipes.first_lora_run", "main", "first_lora_run.py"),
    "harbor_rl.check_tasks": (
        "tinker_cookbook.recipes.harbor_rl.check_tasks", "main", "harbor_rl/check_tasks.py",
    ),
    "quickstart": ("tinker_cookbook.recipes.quickstart.__main__", "run_study", "quickstart"),
    "quickstart.spread": ("tinker_cookbook.recipes.quickstart.spread", "main", "quickstart"),
    "quickstart.tool_world": (
        "tinker_cookbook.recipes.quickstart.tool_world.__main__", "run_multi_turn_stage",
        "quickstart",
    ),
}  # fmt: skip
RECIPES_DIR = Path(__file__).parents[2] / "tinker_cookbook" / "recipes"


def test_every_entry_point_is_checked():
    found = set()
    for path in RECIPES_DIR.rglob("*.py"):
        if "entrypoint(" in path.read_text():
            module = ".".join(path.relative_to(RECIPES_DIR).with_suffix("").parts)
            found.add(module.removesuffix(".__main__"))
    assert found == set(RECIPES) | set(RUNNERS)


@pytest.mark.parametrize("recipe", sorted(RUNNERS))
def test_every_listed_flag_is_read(recipe):
    module_name, target, where = RUNNERS[recipe]
    entry = getattr(importlib.import_module(module_name), target)
    flags = {flag.rsplit(".", 1)[-1] for flag in help_flags(entry)}
    root = RECIPES_DIR / where
    source = "\n".join(p.read_text() for p in ([root] if root.is_file() else root.rglob("*.py")))
    unread = sorted(f for f in flags if not re.search(rf"\.{f}\b", source))
    assert flags and not unread, f"{recipe}: flags listed by --help that nothing reads: {unread}"
