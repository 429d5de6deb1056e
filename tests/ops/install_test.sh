#!/usr/bin/env bash
# cmake --install into a temp prefix, then use the install as a user would, from another folder:
# the layout (bin/, lib/ static and shared, include/beamlet/, share/beamlet/models/), the
# installed `beamlet devices` and `beamlet infer` with the shipped model found beside it (no
# --weights), and a small program built against the installed headers and libbeamlet.so.
#   tests/ops/install_test.sh BUILD_DIR C_COMPILER [FLAGS]
# FLAGS: what a program linking this build's library also needs (the sanitizer build's
# -fsanitize=..., cmake/sanitize.cmake), as one word-split string.
set -euo pipefail
BUILD=${1:?usage: $0 BUILD_DIR C_COMPILER [FLAGS]}
CC=${2:-cc}
read -r -a FLAGS <<< "${3:-}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
cmake --install "$BUILD" --prefix "$prefix" > "$tmp/install.log" || { cat "$tmp/install.log"; exit 1; }
fails=0
check() {  # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@" > "$tmp/out" 2>&1; then echo "ok    $what"; else echo "FAIL  $what"; cat "$tmp/out"; fails=$((fails + 1)); fi
}
libdir=$(find "$prefix" -name 'libbeamlet.so' -printf '%h\n' | head -1)
check "bin/beamlet and the examples" test -x "$prefix/bin/beamlet" -a -x "$prefix/bin/01_cpu_inference"
check "libbeamlet.a and libbeamlet.so" test -f "$libdir/libbeamlet.a" -a -f "$libdir/libbeamlet.so"
check "include/beamlet/ holds the public headers" test -f "$prefix/include/beamlet/stages.h" -a -f "$prefix/include/beamlet/devices.h"
check "no application header among them" test ! -e "$prefix/include/beamlet/cheatsheet.h"
check "share/beamlet/models/ holds the shipped model" test -f "$prefix/share/beamlet/models/fashion-resnet18-w8.safetensors"
cd /
check "the installed beamlet devices" "$prefix/bin/beamlet" devices
if [ -d /usr/share/datasets/fashion-mnist ]; then
  check "the installed beamlet infer finds its model from /" env -u BEAMLET_MODEL_DIR "$prefix/bin/beamlet" infer \
    --limit=20 --output="$tmp/infer"
  check "... the one in share/beamlet/models" grep -q "$prefix/share/beamlet/models/fashion-resnet18-w8.safetensors" "$tmp/infer/summary.json"
else
  echo "skip  beamlet infer (no Fashion-MNIST; scripts/setup.sh installs dataset-fashion-mnist)"
fi
cat > "$tmp/user.c" <<'PROGRAM'
/* A user's program: the resolver, a tensor and an op, through the installed library. */
#include <stdio.h>

#include <beamlet/devices.h>

int main(void) {
    bl_device *dev;
    if (bl_device_get("cpu_ref", &dev) != BL_OK) return fprintf(stderr, "%s\n", bl_last_error()), 1;
    float a[4] = {1, -2, 3, -4}, out[4];
    int64_t shape[1] = {4};
    bl_tensor x = bl_tensor_view(dev, a, BL_F32, 1, shape), y = bl_tensor_view(dev, out, BL_F32, 1, shape);
    bl_status s = bl_op_relu_forward(dev, &x, &y);
    printf("%s relu: %g %g %g %g\n", bl_device_name(dev), out[0], out[1], out[2], out[3]);
    bl_device_release(dev);
    return s == BL_OK && out[1] == 0 && out[2] == 3 ? 0 : 1;
}
PROGRAM
check "a program builds against the installed headers and libbeamlet.so" \
  "$CC" -std=c11 -Wall -Werror "${FLAGS[@]}" -I"$prefix/include" "$tmp/user.c" -L"$libdir" -lbeamlet \
  -Wl,-rpath,"$libdir" -o "$tmp/user"
check "... and runs" "$tmp/user"
echo "install_test: $fails failed"
exit $((fails > 0))
