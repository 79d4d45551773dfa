#!/usr/bin/env bash
# Render the book twice, in two fresh clones, and compare every figure byte for byte (`make repro`).
#
# Both renders use the main checkout's virtual environment, but each imports the package from its
# own clone (PYTHONPATH=<clone>/code wins over the editable install) and writes into its own clone
# (TEXT2IMAGE_ROOT=<clone>). Only committed files are cloned: commit before checking.
#   PROFILE=smoke bash scripts/check_reproducible.sh   # a quick check (figures under build/smoke)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
PROFILE="${PROFILE:-cpu}"
[ -x "$PY" ] || { echo "no $PY: run make first" >&2; exit 2; }

WORK="$(mktemp -d -t text2image-repro.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

figures_of() {  # where a render of $PROFILE leaves its figures
  if [ "$PROFILE" = smoke ]; then echo "$1/build/smoke/figures"; else echo "$1/figures"; fi
}

for name in a b; do
  clone="$WORK/$name"
  git clone --quiet "$ROOT" "$clone"
  echo "== render $name ($PROFILE) in $clone"
  ( cd "$clone" && TEXT2IMAGE_ROOT="$clone" PYTHONPATH="$clone/code" \
      "$PY" -m text2image book --profile "$PROFILE" --force --no-render )
  ( cd "$clone" && TEXT2IMAGE_ROOT="$clone" PYTHONPATH="$clone/code" \
      "$PY" -c 'import text2image, sys; p = text2image.__file__; sys.exit(0 if p.startswith(sys.argv[1]) else f"package imported from {p}")' "$clone" )
done

A="$(figures_of "$WORK/a")"; B="$(figures_of "$WORK/b")"
count=$(cd "$A" && find . -name '*.png' | wc -l)
if [ "$count" -eq 0 ]; then echo "no figures were produced"; exit 1; fi
if diff -r -q "$A" "$B"; then
  echo "reproducible: $count figures identical byte for byte in both renders"
else
  echo "NOT reproducible: the renders above differ"
  exit 1
fi
if [ "$PROFILE" != smoke ]; then  # informative: does the committed book match a fresh render?
  if diff -r -q "$ROOT/figures" "$A" >/dev/null; then echo "the committed figures/ match the fresh render"
  else echo "note: the committed figures/ differ from a fresh render (re-render and commit them)"; fi
fi
