#!/usr/bin/env bash
# Installs panst3r-splat and everything it needs into a virtual environment (default: .venv next to this repo).
#
#   bash scripts/install.sh            # then: .venv/bin/panst3r-splat demo
#   PANST3R_VENV=/opt/venv bash scripts/install.sh
#
# What it does, in order:
#   1. creates the virtual environment with the python3 on PATH (3.10+);
#   2. installs the project (editable) and its test extras with the exact versions of constraints.txt: torch 2.13.0
#      (the CPU wheel on these machines), viser 1.1.1, gsplat 1.4.0, nerfstudio 1.1.5's runtime requirements, ...;
#      then nerfstudio 1.1.5 itself with --no-deps: its metadata pins viser==0.2.7, which has no client-side
#      Gaussian splats, so pip could not resolve it next to viser 1.x (`pip check` reports that one pin, see README);
#   3. installs the torchvision start-up hook (pipeline/torchvision_hook.py): the registry's torchvision is a CUDA
#      build that cannot import next to a CPU torch; the hook makes `import torchvision` (and so every `ns-*`
#      command) work, lazily, without importing torch at every Python start;
#   4. installs the system packages the project calls when they are missing and this user can: ffmpeg (videos,
#      ns-render) and chromium (the viewer's browser test), from Debian's packages.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${PANST3R_VENV:-$repo/.venv}"
python="${PYTHON:-python3}"

log() { printf '[install] %s\n' "$*"; }

if [ ! -x "$venv/bin/python" ]; then
    log "creating virtual environment $venv"
    "$python" -m venv "$venv"
fi
log "installing panst3r-splat and its pinned dependencies (a few minutes on a fresh machine)"
"$venv/bin/python" -m pip install --quiet --upgrade "pip>=23" 2>&1 | grep -v "is ignored" || true
"$venv/bin/python" -m pip install --quiet -c "$repo/constraints.txt" -e "$repo[test]" 2>&1 | grep -v "is ignored" || true
"$venv/bin/python" -m pip install --quiet --no-deps -c "$repo/constraints.txt" "nerfstudio==1.1.5" 2>&1 | grep -v "is ignored" || true
"$venv/bin/python" -c "import panst3r_splat.pipeline.frontends.cli, nerfstudio, viser" || { log "the project did not install; see the pip output above"; exit 1; }

site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cp "$repo/pipeline/torchvision_hook.py" "$site/_panst3r_splat_torchvision_hook.py"
echo "import _panst3r_splat_torchvision_hook" > "$site/_panst3r_splat_torchvision_hook.pth"
"$venv/bin/python" -c "import torchvision" || { log "torchvision still fails to import"; exit 1; }

missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing system packages: ${missing[*]}"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        log "please install these system packages yourself: ${missing[*]} (videos and the browser test need them)"
    fi
fi
log "done: run $venv/bin/panst3r-splat demo"
