# The two commands of the README: `make book` and `make test`.
# Both create .venv with Python 3.11 and install the pinned set of requirements.lock.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: book test smoke quarto bench repro browser mathjax clean help

help:
	@echo "make book   execute every chapter (profile cpu, fr + en) and build the book"
	@echo "make test   run the test suite, smoke render of both editions included"
	@echo "make smoke  smoke render of both editions (figures go to build/, not figures/)"
	@echo "make quarto quarto render of both editions (--profile fr, --profile en; TEXT2IMAGE_PROFILE=smoke|gpu adds it)"
	@echo "make bench  print the timings the issues ask for (smoke render per chapter, world, oracle)"
	@echo "make repro  render twice in two fresh clones and compare the figures byte for byte"

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

book: $(STAMP)
	$(PY) -m text2image book

smoke: $(STAMP)
	TEXT2IMAGE_PROFILE=smoke $(PY) -m text2image book

test: $(STAMP) browser mathjax
	$(PY) -m pytest -q

# Real Quarto, if it is on the PATH (the conda-forge route of environment.yml); one line if it is not.
quarto: $(STAMP)
	@$(PY) -m text2image.book.quarto

bench: $(STAMP)
	$(PY) -m text2image bench

repro: $(STAMP)
	bash scripts/check_reproducible.sh

# Headless Chromium opens the HTML preview in the tests (Debian's package).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: sudo apt-get install chromium (the preview test opens the book in it)"; exit 1; fi; }

# MathJax 3, which Quarto's pages load from a CDN, from npm: the tests check every formula with it.
MATHJAX := build/mathjax/node_modules/mathjax/es5/tex-chtml-full.js
mathjax: $(MATHJAX)
$(MATHJAX):
	@command -v npm >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq npm >/dev/null; \
	  else echo "npm is missing: sudo apt-get install npm (the math test checks every formula with MathJax)"; exit 1; fi; }
	npm install --silent --no-save --no-audit --no-fund --prefix build/mathjax mathjax@3.2.2

clean:
	rm -rf build _book
