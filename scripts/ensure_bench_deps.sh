#!/usr/bin/env bash
# The quality suite (benchmarks/suite/build.py) is built from what Debian ships: espeak-ng speaks the audio
# datasets and the font packages draw the glyphs. Installed from apt when missing (about 30 s).
set -euo pipefail
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
for pkg in fonts-dejavu-core fonts-liberation fonts-noto-core fonts-freefont-ttf fonts-urw-base35; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
echo "Installing for the benchmark suite: ${need[*]}" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
