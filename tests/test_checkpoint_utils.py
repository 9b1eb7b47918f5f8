"""checkpoint_utils: typed records, saving, and the renderer a checkpoint was trained with,
recorded by the training loops and reused when the checkpoint is loaded again."""

import logging
from pathlib import Path

import chz
import pytest

from tinker_cookbook import checkpoint_utils
from tinker_cookbook.checkpoint_utils import CheckpointRecord
from tinker_cookbook.recipes.distillation import off_policy_reasoning, on_policy_distillation
from tinker_cookbook.utils.checkpoints import append_jsonl

FIXTURES = Path(__file__).parent / "fixtures"
MODEL = "tiny-qwen3-1m"


def test_records_round_trip_with_step_as_batch(tmp_path):
    append_jsonl(tmp_path / "checkpoints.jsonl", {"name": "000010", "step": 10, "state_path": "/s"})
    append_jsonl(
        tmp_path / "checkpoints.jsonl",
        {"name": "final", "step": 20, "sampler_path": "/p", "renderer_name": "qwen3"},
    )
    first, final = checkpoint_utils.load_checkpoints_file(str(tmp_path))
    assert (first.batch, first.state_path, first.has("sampler_path")) == (10, "/s", False)
    assert final.get("renderer_name") == "qwen3" and final.get("missing", 0) == 0
    assert CheckpointRecord.from_dict(final.to_dict()) == final
    assert checkpoint_utils.get_last_checkpoint(str(tmp_path)).name == "000010"
    assert checkpoint_utils.get_last_checkpoint(str(tmp_path), "sampler_path").name == "final"
    assert checkpoint_utils.get_last_checkpoint(str(tmp_path / "none")) is None


def test_save_checkpoint_records_paths_and_renderer(tmp_path, isolated_cache):
    from tinker_cookbook.local import LocalBackendConfig, ServiceClient

    service = ServiceClient(LocalBackendConfig(checkpoint_dir=str(tmp_path / "checkpoints")))
    client = service.create_lora_training_client(MODEL, rank=4).result()
    paths = checkpoint_utils.save_checkpoint(
        client, "first", str(tmp_path), {"batch": 1, "renderer_name": "llama3"}, kind="both"
    )
    assert sorted(paths) == ["sampler_path", "state_path"]
    (record,) = checkpoint_utils.load_checkpoints_file(str(tmp_path))
    assert record.batch == 1 and record.get("renderer_name") == "llama3"
    for path in paths.values():
        assert checkpoint_utils.get_renderer_name_from_checkpoint(None, path) == "llama3"


def test_resolution_order_explicit_then_recorded_then_recommended(tmp_path, capsys):
    path = tmp_path / "checkpoints" / "run" / "weights" / "final"
    path.mkdir(parents=True)
    append_jsonl(
        tmp_path / "checkpoints.jsonl",
        {"name": "final", "state_path": str(path), "renderer_name": "llama3"},
    )

    def resolve(explicit, checkpoint):
        return checkpoint_utils.resolve_renderer_name_from_checkpoint_or_default(
            model_name=MODEL, explicit_renderer_name=explicit, load_checkpoint_path=checkpoint
        )

    assert resolve("role_colon", str(path)) == "role_colon"
    assert "renderer: role_colon (renderer_name as given)" in capsys.readouterr().out
    assert resolve(None, str(path)) == "llama3"
    assert f"renderer: llama3 (recorded with checkpoint {path})" in capsys.readouterr().out
    assert resolve(None, None) == "qwen3_instruct"
    assert f"renderer: qwen3_instruct (recommended for {MODEL})" in capsys.readouterr().out
    assert resolve(None, str(tmp_path / "unrecorded")) == "qwen3_instruct"


def test_a_mismatched_renderer_warns(tmp_path, caplog):
    append_jsonl(
        tmp_path / "checkpoints.jsonl",
        {"name": "a", "state_path": str(tmp_path / "a"), "renderer_name": "llama3"},
    )
    with caplog.at_level(logging.WARNING):
        checkpoint_utils.check_renderer_name_for_checkpoint(None, str(tmp_path / "a"), "qwen3")
    assert "trained with 'llama3', this run uses 'qwen3'" in caplog.text


@pytest.fixture(scope="module")
def role_colon_run(tmp_path_factory):
    log_path = tmp_path_factory.mktemp("sft")
    cli = chz.Blueprint(off_policy_reasoning.CLIConfig).make_from_argv(
        [
            f"model_name={MODEL}",
            f"dataset_path={FIXTURES / 'openthoughts3_sample.jsonl'}",
            "renderer_name=role_colon",
            "batch_size=4",
            "lora_rank=8",
            "max_steps=1",
            "max_length=128",
            "eval_every=0",
            f"log_path={log_path}",
        ]  # fmt: skip
    )
    return off_policy_reasoning.main(cli)


def test_a_checkpoint_is_loaded_with_the_renderer_it_was_trained_with(role_colon_run, capsys):
    assert role_colon_run["renderer_name"] == "role_colon"
    state = role_colon_run["state_path"]
    # The student of on-policy distillation, and its held-out evaluation.
    cli = chz.Blueprint(on_policy_distillation.CLIConfig).make_from_argv(
        [
            f"model_name={MODEL}",
            f"teacher_model={MODEL}",
            f"load_checkpoint_path={state}",
            f"dataset_path={FIXTURES / 'deepmath_sample.jsonl'}",
            f"eval_dataset_path={FIXTURES / 'deepmath_sample.jsonl'}",
        ]  # fmt: skip
    )
    config = on_policy_distillation.build_config(cli)
    assert "renderer: role_colon (recorded with checkpoint" in capsys.readouterr().out
    assert config.renderer_name == "role_colon"
    assert config.dataset_configs[0].dataset_builder.renderer_name == "role_colon"
    assert config.evaluator_builders[0].renderer_name == "role_colon"
    explicit = on_policy_distillation.build_config(chz.replace(cli, renderer_name="qwen3"))
    assert explicit.dataset_configs[0].dataset_builder.renderer_name == "qwen3"
    # Continued SFT from it.
    sft = off_policy_reasoning.build_config(
        off_policy_reasoning.CLIConfig(model_name=MODEL, load_checkpoint_path=state)
    )
    assert sft.dataset_builder.common_config.renderer_name == "role_colon"
