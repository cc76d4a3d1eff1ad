#!/usr/bin/env bash
# Render an example note with a trained pipeline to HTML and screenshot it in headless
# Chromium (Debian package `chromium`), to check the page as a person sees it.
# Usage: bash docs/screenshot.sh [PIPELINE] [TEXT]
set -euo pipefail
cd "$(dirname "$0")/.."
PIPELINE=${1:-training/soft_prompt_frozen/model-best}
TEXT=${2:-"The patient developed severe neutropenia and a skin rash after starting 500 mg of carbamazepine, which was stopped."}
# the active virtual environment's Python, else the Makefile's .venv, else python on PATH
PY=${PY:-${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/python}}
[ -n "$PY" ] || { [ -x .venv/bin/python ] && PY=.venv/bin/python || PY=python; }
"$PY" -m spacy_softprompt render "$PIPELINE" "$TEXT" --html docs/render_example.html
command -v chromium >/dev/null || { echo "needs Chromium: apt-get install chromium"; exit 1; }
profile=$(mktemp -d)
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size=1000,620 \
  --screenshot="$PWD/docs/render_example.png" "file://$PWD/docs/render_example.html" 2>/dev/null
rm -rf "$profile"
echo "docs/render_example.png"
