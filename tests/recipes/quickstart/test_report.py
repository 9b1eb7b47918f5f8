from PIL import Image

from tinker_cookbook.recipes.quickstart.report import plot_study, results_table


def test_results_table_is_markdown_with_aligned_columns():
    table = results_table([("Off-policy SFT", "answers", "50.0% pass@1", "300")])
    lines = table.splitlines()
    assert lines[0].startswith("| Method") and "Held-out score" in lines[0]
    assert set(lines[1]) <= {"|", "-"}
    assert "| Off-policy SFT" in lines[2] and "| 300" in lines[2]
    assert len({len(line) for line in lines}) == 1


def test_plot_study_writes_a_png_with_both_panels(tmp_path):
    curves = {
        "SFT": [(0, 0.0, 3.0), (100, 0.5, 0.5)],
        "OPD": [(100, 0.5, 0.5), (110, 0.8, None)],
    }
    path = plot_study(curves, {"teacher": 0.97}, tmp_path / "study.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > image.size[1] > 200
