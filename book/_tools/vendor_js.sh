#!/usr/bin/env bash
# Re-create book/_static/vendor/: the JavaScript the static book needs, served from the book itself
# so that every page renders without a network (MathJax for the maths; Vega, Vega-Lite and
# vega-embed for the Altair charts and their sliders). Needs npm (the npm registry).
# Run it when Altair's Vega-Lite major version changes: the book build checks that they agree.
#   bash book/_tools/vendor_js.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VEGA=${VEGA:-6}; VEGALITE=${VEGALITE:-6}; VEGAEMBED=${VEGAEMBED:-7}; MATHJAX=${MATHJAX:-3}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "vega@$VEGA" "vega-lite@$VEGALITE" "vega-embed@$VEGAEMBED" "mathjax@$MATHJAX" >/dev/null)
for f in "$tmp"/*.tgz; do d="${f%.tgz}"; mkdir -p "$d"; tar xzf "$f" -C "$d"; done
out=_static/vendor
rm -rf "$out"; mkdir -p "$out/vega" "$out/mathjax/es5/output/chtml/fonts/woff-v2"
ver() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['version'])" "$1"; }
for lib in vega vega-lite vega-embed; do
    pkg=$(ls -d "$tmp/$lib"-[0-9]*/package)
    cp "$pkg/build/$lib.min.js" "$out/vega/"
    cp "$pkg/LICENSE" "$out/vega/LICENSE-$lib"
done
mj=$(ls -d "$tmp"/mathjax-[0-9]*/package)
cp "$mj/es5/tex-chtml-full.js" "$out/mathjax/es5/"
cp "$mj/es5/output/chtml/fonts/woff-v2/"*.woff "$out/mathjax/es5/output/chtml/fonts/woff-v2/"
cp "$mj/LICENSE" "$out/mathjax/LICENSE"
python3 - "$out/VERSIONS.json" \
    "$(ver "$(ls -d "$tmp"/vega-[0-9]*/package)/package.json")" \
    "$(ver "$(ls -d "$tmp"/vega-lite-[0-9]*/package)/package.json")" \
    "$(ver "$(ls -d "$tmp"/vega-embed-[0-9]*/package)/package.json")" \
    "$(ver "$mj/package.json")" <<'PY'
import json, sys
path, vega, vl, embed, mj = sys.argv[1:]
json.dump({"vega": vega, "vega-lite": vl, "vega-embed": embed, "mathjax": mj},
          open(path, "w"), indent=2)
open(path, "a").write("\n")
PY
echo "vendored into book/$out:"; cat "$out/VERSIONS.json"; du -sh "$out"
