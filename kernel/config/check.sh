#!/bin/sh
# check.sh FRAGMENT CONFIG: fails, naming each option, when the merged CONFIG lost a setting of
# FRAGMENT (a dependency missing from the fragment makes olddefconfig drop it silently).
frag=$1 cfg=$2 bad=0
for line in $(grep -E '^CONFIG_[A-Z0-9_]+=' "$frag"); do
  opt=${line%%=*} want=${line#*=}
  have=$(grep -E "^$opt=" "$cfg" | cut -d= -f2-)
  if [ "$want" = n ]; then [ -z "$have" ] && continue; fi
  if [ "$want" != "$have" ]; then echo "c2vm kernel config: $opt=$want did not stick (have ${have:-unset}): add what it depends on to $frag" >&2; bad=1; fi
done
exit $bad
