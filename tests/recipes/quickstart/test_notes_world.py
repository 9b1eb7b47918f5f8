from tinker_cookbook.recipes.quickstart.notes_world import (
    house_note,
    note_pairs,
    note_prompt_rows,
    note_sft_rows,
)


def test_note_splits_are_disjoint_and_cover_every_pair():
    train, held = note_pairs(held_out=False), note_pairs(held_out=True)
    assert set(train).isdisjoint(held) and len(train) + len(held) == len(set(train + held))
    assert len(held) >= 10 and len(train) >= 3 * len(held) - 10


def test_teacher_rows_teach_the_house_style_only_on_training_pairs():
    rows = note_sft_rows(repeats=2, seed=0)
    held = {f"Thank {n} for the {g}." for n, g in note_pairs(held_out=True)}
    assert len(rows) == 2 * len(note_pairs(held_out=False))
    for row in rows:
        request, note = (turn["value"] for turn in row["conversations"])
        assert request not in held
        name, gift = request[len("Thank ") : -1].split(" for the ")
        assert note == house_note(name, gift)
    assert rows == note_sft_rows(repeats=2, seed=0) != note_sft_rows(repeats=2, seed=1)


def test_prompt_rows_use_the_tulu3_schema():
    row = note_prompt_rows(held_out=True)[0]
    assert row["messages"][0]["role"] == "user" and row["messages"][0]["content"].startswith(
        "Thank"
    )
