#!/usr/bin/env bash
# Refresh requirements.txt, the lock file that the README's commands and .ci/run install: the exact
# version of every package, resolved by pip-tools from requirements.in (the project's direct needs).
#   bash tools/lock.sh              # then review `git diff requirements.txt`, run the tests, commit
# torch is written without its local build label (+cpu), so that pip takes the build this machine
# offers for torch==2.13.0 (the CPU build here).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)/lock
python3 -m venv "$venv"
"$venv/bin/pip" install -q pip-tools==7.7.0
"$venv/bin/pip-compile" -q --no-emit-index-url --no-emit-find-links --strip-extras --allow-unsafe \
    --output-file requirements.txt requirements.in
sed -i -E 's/^(torch==[0-9.]+)\+[a-z0-9]+/\1/' requirements.txt
rm -rf "$(dirname "$venv")"
echo "requirements.txt: $(grep -c '==' requirements.txt) packages pinned"
