import pytest

from tinker_cookbook.hyperparam_utils import get_lora_lr, hidden_size


def test_lr_shrinks_with_width_and_names_resolve():
    assert hidden_size("Qwen/Qwen3-8B-Base") == 4096
    assert (
        get_lora_lr("tiny-qwen3-1m") > get_lora_lr("Qwen/Qwen3-0.6B") > get_lora_lr("Qwen/Qwen3-8B")
    )
    assert 5e-4 < get_lora_lr("Qwen/Qwen3-8B-Base") < 1e-3
    assert get_lora_lr("Qwen/Qwen3-8B", on_policy=True) == pytest.approx(
        get_lora_lr("Qwen/Qwen3-8B") / 10
    )


def test_local_folders_read_their_config_and_unknown_names_fail_clearly():
    from tinker_cookbook.local.models import builtin_model_dir

    assert hidden_size(str(builtin_model_dir("tiny-qwen3-4m"))) == 256
    with pytest.raises(ValueError, match="No hidden size known for 'acme/unknown-7b'"):
        hidden_size("acme/unknown-7b")
