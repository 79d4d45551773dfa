"""The chapter runner: what ``quarto render`` does with our chapters, without needing Quarto.

Each rule that reproduces a Quarto behaviour names, in its module, the
quarto-dev/quarto-cli source it follows, so that CI fails where Quarto would.

Quarto's Jupyter engine turns each ``.qmd`` into a notebook and runs it with
nbclient. Readers who install Quarto get the real website; everybody else (CI,
the tests, a machine without Quarto) still needs every chapter executed,
checked and viewable. One module per step:

- ``project``: the chapter lists of ``_quarto-fr.yml`` / ``_quarto-en.yml``, the
  root home page, and the merged configuration of each render;
- ``qmd``: parse a chapter into cells, options, labels, references, inline code;
- ``checks``: the static checks (labels, references, fr/en parity) and the
  output checks (one image per figure cell);
- ``crossref``: chapter, section, figure and table numbers of an edition;
- ``execute``: run a chapter in its own Jupyter kernel, cell by cell;
- ``inline``: inline expressions, evaluated and written as Quarto writes them;
- ``freeze``: skip chapters whose inputs did not change;
- ``figures``: write the figure PNGs atomically;
- ``preview``: a static HTML preview when Quarto is not installed;
- ``quarto``: the ``quarto render`` commands when it is (``make quarto``);
- ``build``: the orchestration behind ``python -m text2image book``.
"""
