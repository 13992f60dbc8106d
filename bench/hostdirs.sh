#!/usr/bin/env bash
# bench/hostdirs.sh: host directories (-v /dir:/path) against an ext4 volume image and docker's
# bind mount, in one run: a 256 MiB sequential write (dd, fsync) and read (a file the host wrote),
# then a many-small-files workload: untar a tree of 20,000 files (0.5-4 KiB, 200 directories) and
# `find | xargs stat` it. Timed inside the guest (/proc/uptime), one VM per target, cold guest
# cache. Targets: the ext4 image (--mount type=block), virtio-fs (the default) and, on the c2vm
# kernel (the only one with 9p), 9p (C2VM_SHARE_FS=9p); docker's bind mount when a docker daemon
# answers (DOCKER_HOST). Prints a markdown table; bench/run.sh puts it into results.md.
# Needs root (virtiofsd), e2fsprogs, python3, busybox-static.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(dirname "$here")
c2vm=${C2VM:-$root/bin/c2vm}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/c2vm
deb=$(ls "$cache"/kernel/linux-image-[0-9]*_amd64.deb | sort -V | tail -1)
w=$(mktemp -d); trap 'rm -rf "$w"' EXIT

# a busybox root filesystem, one bundle per kernel
mkdir -p "$w/rootfs/bin" "$w/rootfs/d" "$w/rootfs/in"
cp /bin/busybox "$w/rootfs/bin/"
for a in sh dd tar find xargs stat cut cat sync rm; do ln -s busybox "$w/rootfs/bin/$a"; done
kernels="debian"; [ -e "$cache/kernel-c2vm/amd64" ] && kernels="debian c2vm"
for k in $kernels; do
  kern=$deb; [ "$k" = c2vm ] && kern=c2vm
  "$c2vm" convert --quiet --kernel "$kern" -o "$w/$k.bundle" "rootfs:$w/rootfs"
done

# the inputs: the tree as a tar on a read-only ext4 image, and the file to read
python3 - "$w/tree" <<'PY'
import os, random, sys
r = random.Random(26)
for d in range(200):
    p = os.path.join(sys.argv[1], "dir%03d" % d)
    os.makedirs(p)
    for f in range(100):
        with open(os.path.join(p, "file%03d.c" % f), "wb") as fh:
            fh.write(r.randbytes(r.randint(512, 4096)))
PY
mkdir -p "$w/in"; tar -C "$w" -cf "$w/in/tree.tar" tree; rm -rf "$w/tree"
mkfs.ext4 -q -F -d "$w/in" "$w/in.img" 256M
mkdir -p "$w/seed"; head -c $((256 << 20)) /dev/urandom > "$w/seed/ref"

# the guest's side: each step's seconds as "step S"
script='up() { cut -d" " -f1 /proc/uptime; }
step() { n=$1; shift; a=$(up); "$@" >/dev/null 2>&1 || { echo "$n failed"; exit 1; }; b=$(up); echo "$n $a $b"; }
step write dd if=/dev/zero of=/d/big bs=1M count=256 conv=fsync
step read dd if=/d/ref of=/dev/null bs=1M
step untar tar -xf /in/tree.tar -C /d
step stat sh -c "find /d/tree | xargs stat"'

# fresh SEED copies per target
fresh_dir() { rm -rf "$w/share"; cp -a "$w/seed" "$w/share"; }
fresh_img() { rm -f "$w/vol.img"; mkfs.ext4 -q -F -E lazy_itable_init=0 -d "$w/seed" "$w/vol.img" 1G; }
# figures TARGET CMD...: runs CMD, prints "TARGET write read untar stat" in seconds
figures() { local t=$1; shift
  "$@" > "$w/out" 2> "$w/err" || { echo "bench: $t: $(tail -3 "$w/err")" >&2; echo "$t n/a n/a n/a n/a"; return; }
  awk -v t="$t" '{s[$1] = $3 - $2} END {printf "%s %.2f %.2f %.2f %.2f\n", t, s["write"], s["read"], s["untar"], s["stat"]}' "$w/out"; }
in_ro="type=block,source=$w/in.img,target=/in,readonly"
: > "$w/figures"
for k in $kernels; do
  fresh_img; figures "ext4-image/$k" "$c2vm" run --timeout 900 --mount "$in_ro" --mount "type=block,source=$w/vol.img,target=/d" "$w/$k.bundle" -- sh -c "$script" >> "$w/figures"
  fresh_dir; figures "virtiofs/$k" "$c2vm" run --timeout 900 --mount "$in_ro" -v "$w/share:/d" "$w/$k.bundle" -- sh -c "$script" >> "$w/figures"
  if [ "$k" = c2vm ]; then
    fresh_dir; figures "9p/$k" env C2VM_SHARE_FS=9p "$c2vm" run --timeout 900 --mount "$in_ro" -v "$w/share:/d" "$w/$k.bundle" -- sh -c "$script" >> "$w/figures"
  fi
done
if docker info >/dev/null 2>&1; then
  tar -C "$w/rootfs" -c . | docker import - c2vm-bench-busybox >/dev/null
  mkdir -p "$w/inmnt"; tar -C "$w/in" -cf - . | tar -C "$w/inmnt" -xf -
  fresh_dir; figures "docker-bind" docker run --rm --network none -v "$w/inmnt:/in:ro" -v "$w/share:/d" c2vm-bench-busybox sh -c "$script" >> "$w/figures"
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2f", a/b}'; }
echo "## Host directories"
echo
echo "256 MiB sequential write (dd, fsync) and read, then untar of 20,000 files (0.5-4 KiB) and \`find | xargs stat\` of them; seconds inside the guest, one cold VM per target, TCG, $(date -u +%Y-%m-%d). Ratio: to the ext4 volume image on the same kernel."
echo
echo "| target | write s | read s | untar s | find+stat s | untar ÷ ext4 | find+stat ÷ ext4 |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
while read -r t wr rd un st; do
  k=${t#*/}; read -r _ _ _ eu es < <(grep "^ext4-image/$k " "$w/figures" || echo "x n/a n/a n/a n/a")
  [ "$t" = docker-bind ] && { eu=n/a; es=n/a; }
  echo "| $t | $wr | $rd | $un | $st | $(ratio "$un" "$eu") | $(ratio "$st" "$es") |"
done < "$w/figures"
