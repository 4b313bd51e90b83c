#!/usr/bin/env bash
# Put a Vulkan driver for ManiSkill3 / SAPIEN 3 into a folder: Mesa >= 25 lavapipe (a CPU Vulkan driver) from Debian
# bookworm-backports, unpacked with `dpkg -x` (no root, nothing installed system-wide). Bookworm's own Mesa 22 lavapipe
# is too old for SAPIEN 3. Idempotent: a folder that already holds the driver is left as it is.
#
#   sims/maniskill/setup_vulkan.sh [DEST]      (DEST defaults to .venv/vulkan; `make install-maniskill` runs this)
#
# Layout of DEST: lib/ (libvulkan_lvp.so and the newer libdrm it needs, libvulkan.so.1), lvp_icd.json (the loader's
# manifest, pointing at lib/), .complete (written last). sims/maniskill/vulkan.py reads it: VK_ICD_FILENAMES and
# LD_LIBRARY_PATH are set from it before sapien is imported.
set -euo pipefail

DEST=${1:-.venv/vulkan}
if [[ -f "$DEST/.complete" ]]; then
    echo "vulkan: $DEST already holds lavapipe ($(cat "$DEST/.complete"))"
    exit 0
fi
command -v apt-get >/dev/null || { echo "vulkan: apt-get not found: this script needs a Debian-based machine" >&2; exit 1; }

WORK=$(mktemp -d)
chmod 755 "$WORK"  # apt downloads as the _apt user when it can
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/lists/partial" "$WORK/cache/archives/partial" "$WORK/debs" "$WORK/root"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
cat > "$WORK/sources.list" <<SOURCES
deb [signed-by=$KEYRING] http://deb.debian.org/debian bookworm main
deb [signed-by=$KEYRING] http://deb.debian.org/debian bookworm-backports main
SOURCES
# A private apt state: the machine's own sources, lists and cache are not touched.
APT=(-q -o "Dir::Etc::SourceList=$WORK/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
     -o "Dir::State::Lists=$WORK/lists" -o "Dir::Cache=$WORK/cache")
apt-get "${APT[@]}" update >/dev/null
# The driver and the libraries it needs newer than bookworm's (libdrm), from backports; the loader and LLVM it links
# from bookworm, so the folder works on a machine that lacks them too.
PKGS=(mesa-vulkan-drivers/bookworm-backports libdrm2/bookworm-backports libdrm-amdgpu1/bookworm-backports
      libvulkan1 libllvm15)
(cd "$WORK/debs" && apt-get "${APT[@]}" download "${PKGS[@]}" >/dev/null)
for deb in "$WORK"/debs/*.deb; do dpkg -x "$deb" "$WORK/root"; done

ARCH_DIR=$(find "$WORK/root/usr/lib" -maxdepth 1 -type d -name '*-linux-gnu' | head -n1)
LVP=$(find "$WORK/root" -name 'libvulkan_lvp.so' | head -n1)
[[ -n "$LVP" ]] || { echo "vulkan: libvulkan_lvp.so not found in mesa-vulkan-drivers" >&2; exit 1; }

rm -rf "$DEST.partial"
mkdir -p "$DEST.partial/lib"
cp -a "$ARCH_DIR"/. "$DEST.partial/lib/"
# Only lavapipe: the GPU drivers and layers in the same package are of no use here.
find "$DEST.partial/lib" -mindepth 1 -maxdepth 1 ! -name 'libvulkan_lvp.so' ! -name 'libvulkan.so*' ! -name 'libdrm*' \
    ! -name 'libLLVM*' -exec rm -rf {} +
ABS_LIB=$(cd "$DEST.partial" && pwd -P)/lib
FINAL_LIB=$(mkdir -p "$(dirname "$DEST")" && cd "$(dirname "$DEST")" && pwd -P)/$(basename "$DEST")/lib
cat > "$DEST.partial/lvp_icd.json" <<JSON
{"file_format_version": "1.0.0",
 "ICD": {"library_path": "$FINAL_LIB/libvulkan_lvp.so", "api_version": "1.3.0"}}
JSON
# Every library the driver needs must resolve (against the folder first, then the machine).
MISSING=$(LD_LIBRARY_PATH="$ABS_LIB" ldd "$ABS_LIB/libvulkan_lvp.so" | grep 'not found' || true)
if [[ -n "$MISSING" ]]; then
    echo "vulkan: libvulkan_lvp.so needs libraries this machine lacks:" >&2
    echo "$MISSING" >&2
    exit 1
fi
VERSION=$(dpkg-deb -f "$WORK"/debs/mesa-vulkan-drivers_*.deb Version)
echo "mesa-vulkan-drivers $VERSION" > "$DEST.partial/.complete"
rm -rf "$DEST"
mv "$DEST.partial" "$DEST"
echo "vulkan: lavapipe from mesa $VERSION in $DEST"
