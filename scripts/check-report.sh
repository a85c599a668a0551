#!/usr/bin/env bash
# Render the demo's report and notebook in headless Chromium with the network off, and save
# screenshots to look at: scripts/check-report.sh [OUT_DIR] (default: target/report-check).
# Needs Debian's `chromium` (apt-get install chromium) and a built target/debug/saeflow.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/report-check}
mkdir -p "$out"
bin=${SAEFLOW_BIN:-./target/debug/saeflow}
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
"$bin" run pipelines/demo.yaml --cache "$cache" > "$out/run.log"
"$bin" report pipelines/demo.yaml --cache "$cache"
for page in index notebook; do
  # every host resolves nowhere: a page that fetched anything would render broken, not silently online
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --host-resolver-rules="MAP * ~NOTFOUND" --window-size=1300,2400 \
    --screenshot="$out/$page.png" "file://$PWD/reports/demo/$page.html" 2> /dev/null
done
echo "screenshots: $out/index.png $out/notebook.png"
