#!/bin/sh
# Regenerate the Motus word lists in this directory:
#   fr/answers.txt fr/guesses.txt en/answers.txt en/guesses.txt
#   LICENSES.md MPL-2.0.txt
#
# Sources (Debian packages, fetched with `apt-get download` into a temporary
# directory and extracted with `dpkg-deb -x`; no .deb is kept):
#   - French: hunspell-fr-classical (Dicollecte/Grammalecte dictionary),
#     MPL-2.0. Guesses = every form accepted by the dictionary (affix rules
#     expanded: plurals, feminines, conjugations); answers = lemmas tagged as
#     common nouns (po:nom), not capitalised, not plural-only, not
#     symbols/abbreviations. The GPL `wfrench` list is not used.
#   - English: wamerican-small (answers, SCOWL size <= 35, minus regular
#     inflections such as plurals and -ed/-ing forms) and wamerican-large
#     (guesses, SCOWL size <= 70); SCOWL licence (permissive).
# All words: accents stripped, ligatures expanded, upper case, A-Z only,
# 6 to 9 letters, sorted (LC_ALL=C) and unique; every answer is a guess.
# The full criteria are at the top of derive.py (Python 3, standard library).
#
# Usage: sh derive.sh [--debs DIR] [--out DIR]
#   Needs a Debian system with apt-get and dpkg-deb; run `apt-get update`
#   first if `apt-get download` cannot find the packages.
set -eu
LC_ALL=C
export LC_ALL
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
exec python3 "$here/derive.py" --out "$here" "$@"
