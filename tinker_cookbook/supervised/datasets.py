"""Former home of the chat dataset builders; they live in `supervised.types` and
`supervised.data` (the cookbook's modules) and are re-exported here for existing imports."""

from tinker_cookbook.supervised.data import (
    DataStats,
    FromConversationFileBuilder,
    HFChatDatasetBuilder,
    IndexedDataset,
    RowConverter,
    StreamingDataset,
)
from tinker_cookbook.supervised.types import (
    ChatDatasetBuilder,
    ChatDatasetBuilderCommonConfig,
    SupervisedDataset,
    SupervisedDatasetBuilder,
)

__all__ = [
    "ChatDatasetBuilder",
    "ChatDatasetBuilderCommonConfig",
    "DataStats",
    "FromConversationFileBuilder",
    "HFChatDatasetBuilder",
    "IndexedDataset",
    "RowConverter",
    "StreamingDataset",
    "SupervisedDataset",
    "SupervisedDatasetBuilder",
]
