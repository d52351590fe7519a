#!/usr/bin/env bash
# Screenshots of a demo's index page and every report in it, taken by a real browser
# (headless Chromium, as Debian packages it: `apt install chromium`), to look at before a
# change to the reports ships.
#   tools/screenshots.sh runs/demo-TIMESTAMP docs/images
set -euo pipefail
demo=${1:?usage: tools/screenshots.sh DEMO_RUN_DIR OUT_DIR}
out=${2:?usage: tools/screenshots.sh DEMO_RUN_DIR OUT_DIR}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "screenshots: no chromium on PATH; install it (Debian: apt install chromium)" >&2
  exit 1
fi
mkdir -p "$out"
shoot() {  # page, png, height in px (a report is long: its verdict, table and figures)
  "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size=1100,"$3" --screenshot="$2" "file://$(realpath "$1")" 2>/dev/null
  echo "$2"
}
shoot "$demo/index.html" "$out/demo_index.png" 2600
for report in "$demo"/*/report.html; do
  part=$(basename "$(dirname "$report")")
  shoot "$report" "$out/report_$part.png" 3400
done
