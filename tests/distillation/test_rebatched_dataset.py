"""RebatchedDataset: a step's batch builds only the groups it holds, in the same order
whether the dataset exposes its groups or only its batches."""

import pytest

from tinker_cookbook.distillation.train_on_policy import RebatchedDataset
from tinker_cookbook.rl.types import EnvGroupBuilder, GroupIndexedDataset, RLDataset


class Group(EnvGroupBuilder):
    def __init__(self, index: int):
        self.index = index

    async def make_envs(self):
        return []


class Indexed(GroupIndexedDataset):
    def __init__(self, n: int, groups_per_batch: int):
        self.n, self.groups_per_batch, self.built = n, groups_per_batch, 0

    def num_groups(self) -> int:
        return self.n

    def get_group(self, index: int) -> Group:
        self.built += 1
        return Group(index)


class BatchesOnly(RLDataset):
    def __init__(self, inner: Indexed):
        self.inner, self.calls = inner, 0

    def __len__(self) -> int:
        return len(self.inner)

    def get_batch(self, index: int):
        self.calls += 1
        return self.inner.get_batch(index)


def test_a_step_builds_only_its_groups_and_wraps_around():
    data = Indexed(50, groups_per_batch=5)
    batches = RebatchedDataset(data, 8)
    assert len(batches) == 6
    data.built = 0
    batch = batches.get_batch(6)
    assert [g.index for g in batch] == [48, 49, 0, 1, 2, 3, 4, 5]
    assert data.built == 8


def test_a_dataset_without_group_access_is_asked_once_per_inner_batch():
    inner = Indexed(50, groups_per_batch=3)
    opaque = BatchesOnly(inner)
    batches = RebatchedDataset(opaque, 8)
    assert len(batches) == len(RebatchedDataset(inner, 8)) == 6  # 16 batches of 3 = 48 groups
    opaque.calls = 0
    got = [g.index for g in batches.get_batch(1)]
    assert got == list(range(8, 16))
    assert opaque.calls == 4  # inner batches 2 to 5 (groups 6-17), once each


def test_a_step_wrapping_around_a_small_dataset_gets_fresh_groups():
    opaque = BatchesOnly(Indexed(3, groups_per_batch=3))
    batch = RebatchedDataset(opaque, 8).get_batch(0)
    assert [g.index for g in batch] == [0, 1, 2, 0, 1, 2, 0, 1]
    assert len({id(g) for g in batch}) == 8  # no builder object runs twice in one step


def test_empty_datasets_and_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="no env groups"):
        RebatchedDataset(Indexed(0, 4), 8)
    with pytest.raises(ValueError, match="groups_per_batch=0"):
        RebatchedDataset(Indexed(10, 4), 0)
