#!/usr/bin/env bash
# bench/run.sh: one run of c2vm's figures, as ratios to baselines measured in the same run (these
# machines are noisy). Writes bench/results.md and prints it. Run by `make bench`, which builds
# c2vm and both kernels first. Needs: umoci, squashfs-tools, mmdebstrap, qemu-system-x86, GNU time.
#   1. convert of a multi-layer Debian image (mmdebstrap, split in 3 layers, made offline with
#      umoci) vs `umoci raw unpack --rootless` + `mksquashfs`, at mksquashfs's defaults (gzip) and
#      at c2vm's zstd level 3; c2vm's --compression at both ends (lz4, zstd:19)
#   2. boot to workload of `c2vm run` per kernel vs ../shared/tools/boot-floor.sh (busybox init +
#      runc, q35) with the Debian kernel
#   3. the smallest --memory that runs the workload, per kernel
#   4. kernel + initrd sizes
#   5. services: time to ready and throughput of postgres, mariadb, redis, nginx (see below)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(dirname "$here")
c2vm=$root/bin/c2vm; runc=$root/bin/amd64/runc
cache=${XDG_CACHE_HOME:-$HOME/.cache}/c2vm
floor=${FLOOR:-$root/../shared/tools/boot-floor.sh}
[ -f "$floor" ] || { echo "bench: the floor script $floor is missing: set FLOOR to boot-floor.sh" >&2; exit 1; }
runs=${RUNS:-3} bootruns=${BOOT_RUNS:-7}
w=$(mktemp -d); trap 'rm -rf "$w"' EXIT
deb=$(ls "$cache"/kernel/linux-image-[0-9]*_amd64.deb | sort -V | tail -1)

# 6. host directories (ONLY=hostdirs bench/run.sh runs only this and prints its table):
#    bench/hostdirs.sh, virtio-fs (and 9p on the c2vm kernel) vs an ext4 volume image and docker's
#    bind mount: 256 MiB sequential write/read, untar of 20,000 small files, find | xargs stat.
hostdirs_section() { bash "$here/hostdirs.sh" > "$w/hostdirs.md"; }
if [ "${ONLY:-}" = hostdirs ]; then
  hostdirs_section
  cat "$w/hostdirs.md"
  exit 0
fi

# 7. warm start (issue 27; ONLY=warm bench/run.sh runs only this and prints its table): bench/warm.sh,
#    cold run, the save's pause, warm run and the saved state's size, against boot-floor.sh.
warm_section() { bash "$here/warm.sh" > "$w/warm.md"; }
if [ "${ONLY:-}" = warm ]; then
  warm_section
  cat "$w/warm.md"
  exit 0
fi

# 5. services (ONLY=services bench/run.sh runs only this one and replaces its part of results.md):
#    postgres, mariadb, redis and nginx made as their official images are, under c2vm and docker
#    in one run (the parity services tier, one service at a time, C2VM_SERVICES_FIGURES): time to
#    ready on the first start with a new named volume (the database's initialisation included) and
#    each one's load tool through -p for 5 s or a fixed count. Needs docker.io, mmdebstrap and the
#    clients (Makefile PARITY_PKGS).
services_section() {
  (cd "$root" && C2VM_LIBDIR="$root/bin" C2VM_PARITY=1 C2VM_SERVICES_FIGURES="$w/services.txt" \
    go test -count=1 -timeout 40m -run '^TestParityServices$' ./cmd/c2vm >"$w/services.log" 2>&1) ||
    { tail -40 "$w/services.log" >&2; return 1; }
  {
    echo "## Services"
    echo
    echo "Made as the official images are (testdata/parity/services), a new named volume each, driven through -p by their clients; docker is Debian's docker.io with its userland proxy. Same run, $(date -u +%Y-%m-%d), one service at a time."
    echo
    echo "| service | time to ready, first start: c2vm / docker | c2vm ÷ docker | throughput: c2vm / docker | c2vm ÷ docker |"
    echo "| --- | --- | --- | --- | --- |"
    for s in postgres mariadb redis nginx; do
      read -r _ _ cr cf cu < <(grep "^$s c2vm " "$w/services.txt")
      read -r _ _ dr df _ < <(grep "^$s docker " "$w/services.txt")
      echo "| $s | ${cr} s / ${dr} s | $(awk -v a="$cr" -v b="$dr" 'BEGIN {printf "%.1f", a/b}') | ${cf} / ${df} ${cu} | $(awk -v a="$cf" -v b="$df" 'BEGIN {printf "%.2f", a/b}') |"
    done
  } > "$w/services.md"
}
if [ "${ONLY:-}" = services ]; then
  services_section
  touch "$here/results.md"
  awk '/^## Services/{exit} {print}' "$here/results.md" | sed '${/^$/d}' > "$w/results.md"
  { echo; cat "$w/services.md"; } >> "$w/results.md"
  cp "$w/results.md" "$here/results.md"
  cat "$here/results.md"
  exit 0
fi

# median of numbers on stdin
median() { sort -g | awk '{a[NR]=$1} END {printf "%.2f\n", (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# timed CMD...: wall, user+sys CPU, peak RSS (MiB) as "wall cpu rss"; earlier runs' dirty pages are
# written back first, so that no run pays for another's writes
timed() { sync; /usr/bin/time -f '%e %U %S %M' -o "$w/t" "$@" >/dev/null 2>"$w/err" || { cat "$w/err" >&2; return 1; }
  awk '{printf "%.2f %.2f %.0f\n", $1, $2+$3, $4/1024}' "$w/t"; }
size_mb() { du -b "$1" | awk '{printf "%.1f", $1/1e6}'; }

# 1. the image: a Debian bookworm minbase (the parity base, cached) in 3 layers
base=$(ls "$cache"/parity/debian-*.tar 2>/dev/null | head -1 || true)
if [ -z "$base" ]; then
  mkdir -p "$cache/parity"; base=$cache/parity/debian-bench.tar
  mmdebstrap --quiet --variant=minbase --include=ca-certificates,python3-minimal bookworm "$base"
fi
mkdir -p "$w/fs"; tar -xf "$base" -C "$w/fs" --exclude='./dev/*' # device nodes need root
(cd "$w/fs" && tar -cf "$w/l1.tar" usr/lib && tar -cf "$w/l2.tar" --exclude=./usr/lib ./usr && tar -cf "$w/l3.tar" --exclude=./usr .)
img=$w/oci
umoci init --layout "$img" && umoci new --image "$img:bench"
for l in l1 l2 l3; do umoci raw add-layer --image "$img:bench" "$w/$l.tar"; done
umoci config --image "$img:bench" --config.cmd /bin/true
imgsize=$(du -sb "$img" | awk '{printf "%.0f", $1/1e6}')
# medians CMD...: CMD (a timed run) $runs times, the median of each of its three columns
medians() { local i; : > "$w/runs"; for i in $(seq "$runs"); do "$@" >> "$w/runs"; done
  echo "$(cut -d' ' -f1 "$w/runs" | median) $(cut -d' ' -f2 "$w/runs" | median) $(cut -d' ' -f3 "$w/runs" | median | cut -d. -f1)"; }
convert_default() { rm -rf "$w/conv.bundle"; timed "$c2vm" convert --quiet --kernel "$deb" -o "$w/conv.bundle" "oci:$img:bench"; }
read -r cw cc cr < <(medians convert_default)
csize=$(size_mb "$w/conv.bundle/rootfs.squashfs")
# both ends of --compression
for c in lz4 zstd:19; do
  read -r ew _ _ < <(timed "$c2vm" convert --quiet --kernel "$deb" --compression "$c" -o "$w/conv-${c%%:*}.bundle" "oci:$img:bench")
  echo "$ew $(size_mb "$w/conv-${c%%:*}.bundle/rootfs.squashfs")" > "$w/end-${c%%:*}"
done
# baseline: umoci's unpack, then mksquashfs at its defaults (gzip) and at c2vm's zstd level 3
baseline() { rm -rf "$w/unpacked" "$w/umoci.sqfs"
  timed bash -c "umoci raw unpack --rootless --image '$img:bench' '$w/unpacked' && mksquashfs '$w/unpacked' '$w/umoci.sqfs' $1 -noappend -quiet -processors \$(nproc)"; }
read -r gw gc gr < <(medians baseline "")
gsize=$(size_mb "$w/umoci.sqfs")
read -r uw uc ur < <(medians baseline "-comp zstd -Xcompression-level 3")
usize=$(size_mb "$w/umoci.sqfs")

# 2. boot to workload: the hello bundle per kernel, and the floor script
mkdir -p "$w/hello"; cp /bin/busybox "$w/hello/"; mkdir -p "$w/hello/bin"; mv "$w/hello/busybox" "$w/hello/bin/"
ln -s busybox "$w/hello/bin/sh"; ln -s busybox "$w/hello/bin/echo"
for k in debian c2vm; do
  kern=$deb; [ $k = c2vm ] && kern=c2vm
  "$c2vm" convert --quiet --kernel "$kern" --change 'CMD ["/bin/echo","WORKLOAD-OK"]' -o "$w/$k.bundle" "rootfs:$w/hello"
done
# interleaved, so that the machine's drift during the runs touches all three alike
: > "$w/boot-debian"; : > "$w/boot-c2vm"; : > "$w/boot-floor"
for i in $(seq "$bootruns"); do
  for k in debian c2vm; do timed "$c2vm" run "$w/$k.bundle" | cut -d' ' -f1 >> "$w/boot-$k"; done
  bash "$floor" "$deb" "$runc" q35 1 2>/dev/null | grep -Eo '[0-9]+\.[0-9]+' | tail -1 >> "$w/boot-floor"
done
for k in debian c2vm floor; do median < "$w/boot-$k" > "$w/boot-$k.median"; done
fl=$(cat "$w/boot-floor.median")

# 3. smallest --memory (MiB, step 4) that prints the workload's line
# runs_at BUNDLE MIB: the workload's line came out (its whole stdout, captured: no pipe to break)
runs_at() { [ "$(timeout 60 "$c2vm" run --timeout 50 --memory "$2" "$1" 2>/dev/null || true)" = WORKLOAD-OK ]; }
smallest() {
  local lo=24 hi=160 mid
  runs_at "$1" "$hi" || { echo "n/a (not even $hi)"; return; }
  while [ $((hi - lo)) -gt 4 ]; do
    mid=$(( (lo + hi) / 8 * 4 ))
    if runs_at "$1" "$mid"; then hi=$mid; else lo=$mid; fi
  done
  echo "$hi"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
# speed BASE C2VM: "N× faster" or "N× slower"
speed() { awk -v a="$1" -v b="$2" 'BEGIN {if (a >= b) printf "%.2f× faster", a/b; else printf "%.2f× slower", b/a}'; }
{
  echo "# c2vm benchmark results"
  echo
  echo "One run of \`make bench\` on $(nproc) cores, $(date -u +%Y-%m-%d), QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}'), accelerator $( [ -w /dev/kvm ] && grep -qw -e vmx -e svm /proc/cpuinfo && echo kvm || echo tcg). Ratios are to the baseline of the same run."
  echo
  echo "| what | c2vm | baseline | ratio |"
  echo "| --- | --- | --- | --- |"
  echo "| convert, ${imgsize} MB 3-layer Debian image → squashfs (c2vm's default zstd 3), wall, median of $runs (baseline: umoci raw unpack + mksquashfs, its default gzip) | ${cw} s | ${gw} s | $(speed "$gw" "$cw") |"
  echo "| … rootfs size | ${csize} MB | ${gsize} MB | $(ratio "$csize" "$gsize") |"
  echo "| … CPU (user+sys) / peak RSS | ${cc} s / ${cr} MiB | ${gc} s / ${gr} MiB | $(ratio "$cc" "$gc") / $(ratio "$cr" "$gr") |"
  echo "| the same, baseline's mksquashfs at zstd 3 too: wall | ${cw} s | ${uw} s | $(speed "$uw" "$cw") |"
  echo "| … rootfs size / CPU / peak RSS | ${csize} MB / ${cc} s / ${cr} MiB | ${usize} MB / ${uc} s / ${ur} MiB | $(ratio "$csize" "$usize") / $(ratio "$cc" "$uc") / $(ratio "$cr" "$ur") |"
  for c in lz4 zstd; do
    read -r ew es < "$w/end-$c"
    echo "| \`--compression $( [ $c = zstd ] && echo zstd:19 || echo lz4)\`: wall (one run), rootfs size (baseline: umoci + mksquashfs gzip) | ${ew} s, ${es} MB | ${gw} s, ${gsize} MB | $(speed "$gw" "$ew"), $(ratio "$es" "$gsize") the size |"
  done
  for k in debian c2vm; do
    b=$(cat "$w/boot-$k.median")
    echo "| boot to workload, \`c2vm run\` of a busybox echo bundle, $k kernel (median of $bootruns, interleaved with the baseline's; baseline: boot-floor.sh q35, Debian kernel) | ${b} s | ${fl} s | $(ratio "$b" "$fl") |"
  done
  for k in debian c2vm; do
    echo "| smallest \`--memory\` that runs the workload, $k kernel | $(smallest "$w/$k.bundle") MiB | | |"
  done
  for k in debian c2vm; do
    echo "| vmlinuz + initrd.img, $k kernel | $(size_mb "$w/$k.bundle/vmlinuz") + $(size_mb "$w/$k.bundle/initrd.img") MB | | |"
  done
} > "$w/results.md"
warm_section
{ echo; cat "$w/warm.md"; } >> "$w/results.md"
services_section
{ echo; cat "$w/services.md"; } >> "$w/results.md"
cp "$w/results.md" "$here/results.md"
cat "$here/results.md"
