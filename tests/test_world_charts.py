"""Figures of the chapter "The shapes world": French labels agree, and the palette fits the column."""

import matplotlib

matplotlib.use("Agg")
import pytest

from text2image import lang, plots
from text2image.charts import world as charts


@pytest.mark.parametrize("words, expected", [
    (("cross", "blue", "large"), "grande croix bleue"), (("cross", "green", "small"), "petite croix verte"),
    (("cross", "cyan", "small"), "petite croix cyan"), (("circle", "blue", "large"), "grand cercle bleu"),
    (("diamond", "magenta", "small"), "petit losange magenta"),
])
def test_french_object_names_are_ordered_and_agreed(monkeypatch, words, expected):
    monkeypatch.setenv(lang.ENV_VAR, "fr")
    assert charts.object_name(*words) == expected
    monkeypatch.setenv(lang.ENV_VAR, "en")
    assert charts.object_name("cross", "blue", "large") == "large blue cross"


def test_the_palette_fits_the_column_at_9_pt(monkeypatch):
    monkeypatch.setenv(lang.ENV_VAR, "fr")
    fig = charts.palette()
    fig.canvas.draw()
    sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]
    width = fig.get_window_extent().width  # pixels at the book's dpi, before a tight box trims the margins
    assert min(sizes) >= plots.MIN_TEXT_PT and width <= plots.COLUMN_PX
    assert plots.text_on_page(min(sizes), fig.dpi, width) >= plots.MIN_TEXT_PT
    plots.plt.close(fig)


def test_the_oracle_table_gives_each_share_its_interval(monkeypatch):
    monkeypatch.setenv("TEXT2IMAGE_LANG", "en")
    accuracy = {32: {"clean": 1.0, **{name: 0.99 for name in charts.degrade.DEGRADATIONS}}}
    text = charts.oracle_table(accuracy, 2000, 500).data
    assert "| 32 px (%) |" in text
    assert "clean image (2,000 scenes) | 100.00 (99.81\u2060–\u2060100.00) |" in text
    assert charts.share_interval(0.99, 500, 1) == "99.0 (97.7\u2060–\u206099.6)"
