#!/usr/bin/env bash
# Render the Word documents the browser tests downloaded (test-artifacts/documents/*.docx, from
# tests/test_browser.py's completed drill) to the images the user guide shows:
# docs/screenshots/document-<kind>.png, the first page of each, through LibreOffice (headless, to
# PDF) and poppler's pdftoppm. Part of `make guide-screenshots`, never of `make test`.
# Without the official fonts (仿宋_GB2312, 方正小标宋) installed, LibreOffice substitutes a CJK
# font it has (fonts-wqy-microhei): the layout, margins and sizes are the document's own.
set -euo pipefail
cd "$(dirname "$0")/.."
src=test-artifacts/documents
out=docs/screenshots
if ! command -v soffice >/dev/null || ! command -v pdftoppm >/dev/null; then
  echo "render_documents: needs LibreOffice (soffice) and pdftoppm:" \
       "apt-get install libreoffice-writer-nogui poppler-utils" >&2
  exit 1
fi
shopt -s nullglob
docs=("$src"/*.docx)
if [ ${#docs[@]} -eq 0 ]; then
  echo "render_documents: no documents in $src (run tests/test_browser.py first)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A profile of its own, so a running LibreOffice of the user's is neither needed nor disturbed.
soffice -env:UserInstallation="file://$tmp/profile" --headless --convert-to pdf --outdir "$tmp" \
  "${docs[@]}" >/dev/null
for pdf in "$tmp"/*.pdf; do
  kind=$(basename "$pdf" .pdf)
  pdftoppm -png -r 60 -f 1 -l 1 -singlefile "$pdf" "$out/document-$kind"
  echo "$out/document-$kind.png"
done
