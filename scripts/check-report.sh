#!/usr/bin/env bash
# Render the demo's report and notebook in headless Chromium with the network off, and save
# screenshots to look at: scripts/check-report.sh [OUT_DIR] (default: target/report-check).
#   index.png, notebook.png   the top of each page (1300 × 2400)
#   index-full.png            the whole report (every figure and table)
#   top.png                   the report's top at 1100 × 1400: docs/report.png, shown in the README
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
shot() { # page, file, width, height
  # every host resolves nowhere: a page that fetched anything would render broken, not silently online
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --host-resolver-rules="MAP * ~NOTFOUND" --window-size="$3,$4" \
    --screenshot="$out/$2" "file://$PWD/reports/demo/$1.html" 2> /dev/null
}
shot index index.png 1300 2400
shot notebook notebook.png 1300 2400
shot index index-full.png 1300 8400
shot index top.png 1100 1400
echo "screenshots: $out/index.png $out/index-full.png $out/notebook.png $out/top.png"
