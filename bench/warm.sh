#!/usr/bin/env bash
# bench/warm.sh: warm starts (issue 27) in one run, as ratios to boot-floor.sh (default microvm
# machine, Debian kernel) measured interleaved with them: a cold `c2vm run` of the busybox echo
# bundle (--snapshot never), the save's cost (the guest's pause at its ready point, from the saved
# VM's record, a new cache each run), a warm run (--snapshot only) and the saved state's size.
# The c2vm kernel when it is built, else Debian's. Prints a markdown section. RUNS (default 5).
# Called by bench/run.sh (warm_section; ONLY=warm bench/run.sh runs only this).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(dirname "$here")
c2vm=$root/bin/c2vm; runc=$root/bin/amd64/runc
cache=${XDG_CACHE_HOME:-$HOME/.cache}/c2vm
floor=${FLOOR:-$root/../shared/tools/boot-floor.sh}
runs=${RUNS:-5}
w=$(mktemp -d); trap 'rm -rf "$w"' EXIT
deb=$(ls "$cache"/kernel/linux-image-[0-9]*_amd64.deb | sort -V | tail -1)
median() { sort -g | awk '{a[NR]=$1} END {printf "%.2f\n", (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
wall() { local s e; s=$(date +%s.%N); "$@" >"$w/out" 2>"$w/err" || { cat "$w/err" >&2; return 1; }
  grep -qx WORKLOAD-OK "$w/out" || { echo "bench warm: no workload line: $(cat "$w/out" "$w/err")" >&2; return 1; }
  e=$(date +%s.%N); awk -v s="$s" -v e="$e" 'BEGIN {printf "%.2f\n", e-s}'; }

mkdir -p "$w/hello/bin"; cp /bin/busybox "$w/hello/bin/"; ln -s busybox "$w/hello/bin/sh"; ln -s busybox "$w/hello/bin/echo"
kern=c2vm; "$c2vm" convert --quiet --kernel c2vm --change 'CMD ["/bin/echo","WORKLOAD-OK"]' -o "$w/b" "rootfs:$w/hello" 2>/dev/null ||
  { kern=debian; "$c2vm" convert --quiet --kernel "$deb" --change 'CMD ["/bin/echo","WORKLOAD-OK"]' -o "$w/b" "rootfs:$w/hello"; }
: > "$w/floor"; : > "$w/cold"; : > "$w/first"; : > "$w/save"; : > "$w/warm"; : > "$w/size"
for i in $(seq "$runs"); do
  bash "$floor" "$deb" "$runc" microvm 1 2>/dev/null | grep -Eo '[0-9]+\.[0-9]+' | tail -1 >> "$w/floor"
  wall "$c2vm" run --snapshot never "$w/b" >> "$w/cold"
  rm -rf "$w/cache"; mkdir -p "$w/cache"
  XDG_CACHE_HOME=$w/cache wall "$c2vm" run --snapshot auto "$w/b" >> "$w/first"
  meta=$(ls "$w"/cache/c2vm/snapshots/*/meta.json)
  python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print("%.2f" % (m["saveTime"]/1e9)); print(m["size"], file=open(sys.argv[2],"a"))' "$meta" "$w/size" >> "$w/save"
  XDG_CACHE_HOME=$w/cache wall "$c2vm" run --snapshot only "$w/b" >> "$w/warm"
done
fl=$(median < "$w/floor"); cold=$(median < "$w/cold"); first=$(median < "$w/first"); save=$(median < "$w/save"); warm=$(median < "$w/warm")
size=$(awk '{printf "%.0f\n", $1/1e6}' "$w/size" | median | cut -d. -f1)
echo "## Warm start"
echo
echo "The busybox echo bundle ($kern kernel, TCG, 512 MiB) from \`c2vm run\` to its exit, median of $runs, interleaved with boot-floor.sh (microvm, Debian kernel); $(date -u +%Y-%m-%d)."
echo
echo "| what | seconds | ÷ floor |"
echo "| --- | --- | --- |"
echo "| floor (boot-floor.sh microvm) | $fl | 1.00 |"
echo "| cold run (\`--snapshot never\`) | $cold | $(ratio "$cold" "$fl") |"
echo "| first run (\`--snapshot auto\`, boots and saves) | $first | $(ratio "$first" "$fl") |"
echo "| … of which the guest's pause for the save | $save | $(ratio "$save" "$fl") (÷ cold: $(ratio "$save" "$cold")) |"
echo "| warm run (\`--snapshot only\`, restores) | $warm | $(ratio "$warm" "$fl") |"
echo "| saved state (QEMU migration stream, zero pages skipped) | $size MB | |"
