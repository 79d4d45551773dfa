"""Figures and tables of the chapter "Foundations": they draw, and speak the edition's language."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from text2image.charts import foundations as charts
from text2image.models import neuron as nn
from text2image.tables import markdown_table, scientific


def texts(fig):
    found = [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
    return " ".join(found)


@pytest.mark.parametrize("lang, word", [("fr", "perte logistique"), ("en", "log-loss")])
def test_figures_follow_the_language(monkeypatch, lang, word):
    monkeypatch.setenv("TEXT2IMAGE_LANG", lang)
    X, y = nn.moons(60, seed=0)
    model = nn.MLP((2, 4, 1), seed=0)
    h = nn.train(model, X, y, steps=3, lr=0.1)
    figs = [charts.sigmoid(), charts.datasets(nn.blobs(40), (X, y)), charts.boundary(model, X, y),
            charts.boundaries({charts.name("neuron"): nn.Neuron(), charts.name("mlp"): model}, X, y),
            charts.history({charts.name("mlp"): h})]
    assert word in texts(figs[-1])
    other = "classe 0" if lang == "fr" else "class 0"
    assert other in texts(figs[1])
    plt.close("all")


def test_measured_table(monkeypatch):
    monkeypatch.setenv("TEXT2IMAGE_LANG", "fr")
    X, y = nn.blobs(40, seed=0)
    model = nn.Neuron()
    h = nn.train(model, X, y, steps=2, lr=0.1)
    text = charts.measured([("neuron", "blobs", model, h, 0.5, 1e-10)]).data
    assert "| un neurone | deux nuages | 3 | 2 |" in text and "50,0\u202f%" in text and "1,0 × 10⁻¹⁰" in text


def test_measured_table_gives_the_test_accuracy_its_interval(monkeypatch):
    monkeypatch.setenv("TEXT2IMAGE_LANG", "fr")
    X, y = nn.blobs(40, seed=0)
    model = nn.Neuron()
    h = nn.train(model, X, y, steps=2, lr=0.1)
    text = charts.measured([("neuron", "blobs", model, h, 0.995, None)], n_test=1000).data
    assert "exactitude (test, %)" in text and "| 99,5 (98,8\u2060–\u206099,8) |" in text


@pytest.mark.parametrize("value, lang, text", [
    (3.24e-11, "fr", "3,2 × 10⁻¹¹"), (3.24e-11, "en", "3.2 × 10⁻¹¹"),
    (9.96e-5, "en", "1.0 × 10⁻⁴"), (2.5, "en", "2.5"), (12345.0, "fr", "1,2 × 10⁴"),
])
def test_scientific(value, lang, text):
    assert scientific(value, 1, lang) == text


def test_markdown_table_checks_its_shape():
    assert markdown_table(["a", "b"], [[1, 2]]).data.splitlines()[1] == "| :--- | ---: |"
    with pytest.raises(ValueError):
        markdown_table(["a", "b"], [[1]])
