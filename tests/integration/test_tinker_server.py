"""The recipes, unchanged, through the real tinker SDK against a self-hosted
Tinker-compatible server (SkyRL's, JAX on the CPU), compared with the local backend."""

import math
from pathlib import Path

import chz
import pytest

from tests.integration.skyrl_server import Server
from tinker_cookbook.local.models import builtin_model_dir
from tinker_cookbook.recipes.distillation import off_policy_reasoning as sft
from tinker_cookbook.recipes.distillation import on_policy_distillation as opd
from tinker_cookbook.utils.checkpoints import load_checkpoints
from tinker_cookbook.utils.ml_log import read_metrics

FIXTURES = Path(__file__).parents[1] / "fixtures"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model = builtin_model_dir("tiny-qwen3-1m")
    srv = Server(model, tmp_path_factory.mktemp("skyrl"))
    yield srv, str(model)
    srv.stop()


@pytest.fixture
def tinker_key(monkeypatch):
    monkeypatch.setenv("TINKER_API_KEY", "tml-dummy")


def run(module, args):
    return module.main(chz.Blueprint(module.CLIConfig).make_from_argv(args))


def comparable(rows):
    """Metric names that both backends report (optimizer internals are server-specific)."""
    return {k for r in rows for k in r if not k.startswith(("optim/", "time/"))}


def test_sft_recipe_through_the_server(server, tinker_key, tmp_path):
    srv, model = server
    args = [f"model_name={model}", f"dataset_path={FIXTURES / 'openthoughts3_sample.jsonl'}", "batch_size=4",
            "learning_rate=3e-3", "lora_rank=8", "eval_every=2", "save_every=2", "test_size=4"]  # fmt: skip
    final = run(
        sft,
        [
            *args,
            "max_steps=5",
            "backend=tinker",
            f"base_url={srv.url}",
            f"log_path={tmp_path / 'remote'}",
        ],
    )
    run(sft, [*args, "max_steps=2", "backend=local", f"log_path={tmp_path / 'local'}"])
    remote, local = read_metrics(tmp_path / "remote"), read_metrics(tmp_path / "local")
    assert comparable(remote) == comparable(local)
    nll = [r["train_mean_nll"] for r in remote if "train_mean_nll" in r]
    assert all(math.isfinite(x) for x in nll) and nll[-1] < nll[0]
    assert (
        final["state_path"].startswith("tinker://")
        and load_checkpoints(tmp_path / "remote")[-1]["name"] == "final"
    )


def test_on_policy_distillation_recipe_through_the_server(server, tinker_key, tmp_path):
    srv, model = server
    args = [f"model_name={model}", f"teacher_model={model}", f"dataset_path={FIXTURES / 'deepmath_sample.jsonl'}",
            "groups_per_batch=2", "group_size=2", "max_tokens=16", "lora_rank=8", "learning_rate=1e-3",
            "max_steps=2", "save_every=0", "eval_every=0"]  # fmt: skip
    run(opd, [*args, "backend=tinker", f"base_url={srv.url}", f"log_path={tmp_path / 'remote'}"])
    run(opd, [*args, "backend=local", f"log_path={tmp_path / 'local'}"])
    remote, local = read_metrics(tmp_path / "remote"), read_metrics(tmp_path / "local")
    assert comparable(remote) == comparable(local)
    assert all(
        math.isfinite(r["teacher_kl"]) and math.isfinite(r["optim/loss:sum"]) for r in remote
    )


def test_resume_through_the_server(server, tinker_key, tmp_path):
    """The server refuses create_training_client_from_state; the compatibility layer loads the
    saved state into a new client instead, so a rerun still resumes."""
    srv, model = server
    args = [f"model_name={model}", f"dataset_path={FIXTURES / 'openthoughts3_sample.jsonl'}", "batch_size=4",
            "lora_rank=8", "eval_every=0", "save_every=2", "backend=tinker", f"base_url={srv.url}",
            f"log_path={tmp_path}"]  # fmt: skip
    run(sft, [*args, "max_steps=4"])
    # As if the run had died after its step-2 checkpoint: forget the final one and rerun.
    first = (tmp_path / "checkpoints.jsonl").read_text().splitlines()[0]
    assert '"step": 2' in first
    (tmp_path / "checkpoints.jsonl").write_text(first + "\n")
    run(sft, [*args, "max_steps=4"])
    assert [r["step"] for r in read_metrics(tmp_path)] == [0, 1, 2, 3]
    assert load_checkpoints(tmp_path)[-1]["name"] == "final"


def test_clear_errors_before_any_work(server, monkeypatch, tmp_path):
    srv, model = server
    args = [
        f"dataset_path={FIXTURES / 'openthoughts3_sample.jsonl'}",
        "max_steps=1",
        "backend=tinker",
    ]
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    with pytest.raises(ValueError, match="backend=tinker needs TINKER_API_KEY"):
        run(
            sft, [*args, f"model_name={model}", f"base_url={srv.url}", f"log_path={tmp_path / 'a'}"]
        )
    monkeypatch.setenv("TINKER_API_KEY", "tml-dummy")
    with pytest.raises(ConnectionError, match="is not reachable"):
        run(
            sft,
            [
                *args,
                f"model_name={model}",
                "base_url=http://127.0.0.1:9",
                f"log_path={tmp_path / 'b'}",
            ],
        )
    with pytest.raises(ValueError, match="does not serve model 'Qwen/Qwen3-8B'"):
        run(
            sft,
            [
                *args,
                "model_name=Qwen/Qwen3-8B",
                f"base_url={srv.url}",
                f"log_path={tmp_path / 'c'}",
            ],
        )
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()
