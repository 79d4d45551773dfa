"""Profiles and language helpers: the two switches every chapter reads."""

import pytest

from text2image import lang, profiles


def test_default_profile_is_cpu(monkeypatch):
    monkeypatch.delenv(profiles.ENV_VAR, raising=False)
    assert profiles.current() == "cpu"


def test_unknown_profile_names_the_three(monkeypatch):
    monkeypatch.setenv(profiles.ENV_VAR, "laptop")
    with pytest.raises(profiles.ProfileError) as error:
        profiles.current()
    message = str(error.value)
    assert "laptop" in message
    for name in profiles.PROFILES:
        assert name in message


def test_pick_follows_the_environment(monkeypatch):
    table = {"smoke": 1, "cpu": 10, "gpu": 100}
    monkeypatch.setenv(profiles.ENV_VAR, "smoke")
    assert profiles.pick(table) == 1
    monkeypatch.setenv(profiles.ENV_VAR, "gpu")
    assert profiles.pick(table) == 100
    assert profiles.pick(table, "cpu") == 10


def test_pick_requires_every_profile():
    with pytest.raises(KeyError, match="gpu"):
        profiles.pick({"smoke": 1, "cpu": 2}, "cpu")


def test_language_from_environment_then_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(lang.ENV_VAR, "fr")
    assert lang.current() == "fr"
    assert lang.tr("chat", "cat") == "chat"
    monkeypatch.delenv(lang.ENV_VAR)
    (tmp_path / "en").mkdir()
    monkeypatch.chdir(tmp_path / "en")
    assert lang.current() == "en"
    monkeypatch.setenv(lang.ENV_VAR, "de")
    with pytest.raises(ValueError, match="de"):
        lang.current()


def test_french_typography_of_numbers():
    assert lang.number(1234.5, 2, "fr") == "1\u202f234,50"
    assert lang.number(1234.5, 2, "en") == "1,234.50"
    assert lang.percent(0.953, 1, "fr") == "95,3\u202f%"
    assert lang.percent(0.953, 1, "en") == "95.3%"
    assert lang.integer(10000, "fr") == "10\u202f000"


def test_french_tick_labels_use_a_decimal_comma(monkeypatch):
    from text2image import plots

    monkeypatch.setenv(lang.ENV_VAR, "fr")
    fig, ax = plots.subplots()
    ax.plot([0, 0.5, 1.0], [0, 0.25, 1.0])
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert any("," in text for text in labels), labels
    assert not any("." in text for text in labels), labels
    plots.plt.close(fig)


def test_prose_values_are_markdown_so_quarto_shows_them_as_written():
    """Quarto writes an inline str from its repr (U+202F becomes \\u202f); a text/markdown form wins over it."""
    from IPython.core.formatters import DisplayFormatter

    from text2image.book import inline

    formatter = DisplayFormatter()
    for value in (lang.integer(3072, "fr"), lang.percent(0.031, 0, "fr"), lang.number(1234.5, 1, "fr")):
        data, _ = formatter.format(value)
        assert data["text/markdown"] == str(value) and "\\u202f" in data["text/plain"]
        assert inline.markdown({"data": data}) == str(value)
    plain, _ = formatter.format(str(lang.integer(3072, "fr")))
    assert inline.markdown({"data": plain}) == "3\\\\\\\\u202f072"  # what the page would show for a plain str
    assert isinstance(lang.tr("oui", "yes"), lang.Text) and lang.tr("oui", "yes") + "!" in ("oui!", "yes!")


def test_a_label_colon_and_a_listing_follow_each_language():
    assert lang.colon("fr") == "\u00a0:" and lang.colon("en") == ":"
    assert lang.listing(["cercle", "carré", "croix"], "fr") == "cercle, carré et croix"
    assert lang.listing(["circle", "square", "cross"], "en") == "circle, square and cross"
    assert lang.listing(["circle"], "en") == "circle" and lang.listing([], "fr") == ""
    assert isinstance(lang.listing(["a", "b"], "en"), lang.Text)


def test_a_series_of_numbers_keeps_its_no_break_spaces_on_the_page():
    """The French series once went through str.join, a plain str, and Quarto showed 3,0\\u202f; 1,6."""
    from IPython.core.formatters import DisplayFormatter

    from text2image.book import inline

    fr = lang.series([lang.number(3.04, 1, "fr"), lang.number(1.6, 1, "fr")], "fr")
    assert fr == "3,0\u202f; 1,6" and lang.series(["3.0", "1.6"], "en") == "3.0, 1.6"
    data, _ = DisplayFormatter().format(fr)
    assert inline.markdown({"data": data}) == "3,0\u202f; 1,6"



def test_powers_of_ten_are_written_with_superscripts_in_both_editions(monkeypatch):
    for edition in ("fr", "en"):
        monkeypatch.setenv(lang.ENV_VAR, edition)
        assert lang.power_of_ten(1e4) == "10⁴" and lang.power_of_ten(1e-4) == "10⁻⁴" and lang.power_of_ten(1) == "10⁰"
    for bad in (2e4, 0, -10):
        with pytest.raises(ValueError, match="not a power of ten"):
            lang.power_of_ten(bad)
