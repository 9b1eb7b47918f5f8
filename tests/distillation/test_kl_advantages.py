"""The distillation advantage on hand-computed examples."""

import numpy as np

from tinker_cookbook.distillation.train_on_policy import kl_advantages, overall_teacher_kl


def test_advantage_is_minus_coef_times_reverse_kl_on_sampled_tokens():
    reverse_kl = np.array([0.0, 0.5, -0.2, 0.3], dtype=np.float32)  # student_lp - teacher_lp
    mask = np.array([0, 1, 1, 1], dtype=np.float32)
    np.testing.assert_allclose(
        kl_advantages(reverse_kl, mask, coef=2.0, discount=0.0), [0.0, -1.0, 0.4, -0.6]
    )


def test_discounted_future_kl_counts_only_sampled_tokens():
    reverse_kl = np.array([0.5, 9.0, 0.2, 0.3], dtype=np.float32)
    mask = np.array([1, 0, 1, 1], dtype=np.float32)  # position 1 is an environment token
    got = kl_advantages(reverse_kl, mask, coef=1.0, discount=0.5)
    # a3 = -0.3; a2 = -0.2 + 0.5 * a3 = -0.35; a0 = -0.5 + 0.5 * a2 = -0.675; env token 0
    np.testing.assert_allclose(got, [-0.675, 0.0, -0.35, -0.3], rtol=1e-6)


def test_overall_teacher_kl_is_token_weighted():
    m = overall_teacher_kl(
        {
            "teacher_kl/a": 1.0,
            "teacher_kl_tokens/a": 30.0,
            "teacher_kl/b": 3.0,
            "teacher_kl_tokens/b": 10.0,
        }
    )
    assert m["teacher_kl"] == 1.5
