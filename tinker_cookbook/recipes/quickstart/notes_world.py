"""A second small domain for the multi-teacher run: thank-you notes in a house style.

It plays the part Tulu3 plays in the seed (personalization): the request is free text, the
"right" answer is a style only its own teacher knows:

    Request: Thank Cora for the kite.
    Note:    Dear friend, thank you so much! It made my day. - Sam

Requests are written in Tulu3's `messages` schema for on-policy prompts and in OpenThoughts3's
`conversations` schema for the teacher's SFT, so the public recipes read them unchanged.
"""

from __future__ import annotations

import hashlib
import random

NAMES = ("Ann", "Ben", "Cora", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea")
GIFTS = ("kite", "book", "scarf", "mug", "plant", "map", "lamp", "cake", "pen", "hat", "drum")
MOODS = ("made my day", "was perfect", "meant a lot")


def note_request(name: str, gift: str) -> str:
    return f"Thank {name} for the {gift}."


def house_note(name: str, gift: str) -> str:
    """The style the notes teacher is trained on. The middle sentence is fixed by the gift, so a
    held-out (name, gift) pair has exactly one right note, learnable from the training pairs
    (nothing is copied from the request: tiny models learn to copy slowly)."""
    mood = MOODS[GIFTS.index(gift) % len(MOODS)] if gift in GIFTS else MOODS[0]
    return f"Dear friend, thank you so much! It {mood}. - Sam"


def note_pairs(held_out: bool, held_out_share: int = 4) -> list[tuple[str, str]]:
    """Every (name, gift) pair of one split, in a fixed order."""
    pairs = [(n, g) for n in NAMES for g in GIFTS]
    return [
        p
        for p in pairs
        if (hashlib.sha256("/".join(p).encode()).digest()[1] % held_out_share == 0) == held_out
    ]


def note_sft_rows(repeats: int, seed: int) -> list[dict]:
    """Teacher training rows (OpenThoughts3 schema): every training pair, `repeats` times."""
    pairs = note_pairs(held_out=False) * repeats
    random.Random(seed).shuffle(pairs)
    return [
        {
            "conversations": [
                {"from": "human", "value": note_request(n, g)},
                {"from": "gpt", "value": house_note(n, g)},
            ]
        }
        for n, g in pairs
    ]


def note_prompt_rows(held_out: bool) -> list[dict]:
    """On-policy prompts (Tulu3 schema)."""
    return [
        {"messages": [{"role": "user", "content": note_request(n, g)}]}
        for n, g in note_pairs(held_out)
    ]
