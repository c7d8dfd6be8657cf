#!/usr/bin/env bash
# Shows how this host differs from tuning/90-percore.conf and, with --apply,
# changes it: writes each sysctl now and installs the file in /etc/sysctl.d
# so it holds after a reboot. Without --apply nothing is changed.
#
#   scripts/apply-tuning.sh            # what would change
#   sudo scripts/apply-tuning.sh --apply
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
conf="$here/tuning/90-percore.conf"
apply=false
case "${1:-}" in
  --apply) apply=true ;;
  "") ;;
  *) echo "usage: $0 [--apply]" >&2; exit 2 ;;
esac

changes=0
floors="net.core.somaxconn net.ipv4.tcp_max_syn_backlog fs.file-max"
trim() { local s="$1"; s="${s#"${s%%[![:space:]]*}"}"; echo "${s%"${s##*[![:space:]]}"}"; }

while IFS= read -r line; do
  line="$(trim "$line")"
  [[ -z "$line" || "$line" == \#* || "$line" != *=* ]] && continue
  key="$(trim "${line%%=*}")"
  want="$(trim "${line#*=}")"
  path="/proc/sys/${key//.//}"
  if [[ ! -e "$path" ]]; then
    echo "skip    $key (not on this kernel)"
    continue
  fi
  have="$(tr -s '\t ' ' ' < "$path")"
  have="$(trim "$have")"
  if [[ "$have" == "$want" ]]; then
    echo "ok      $key = $have"
    continue
  fi
  # Queue lengths and file counts are floors: never lower them.
  if [[ " $floors " == *" $key "* && "$have" =~ ^[0-9]+$ ]] && ((have >= want)); then
    echo "ok      $key = $have (at least $want)"
    continue
  fi
  changes=$((changes + 1))
  if $apply; then
    sysctl -q -w "$key=$want"
    echo "changed $key: $have -> $want"
  else
    echo "would   $key: $have -> $want"
  fi
done < "$conf"

if $apply; then
  install -m 0644 "$conf" /etc/sysctl.d/90-percore.conf
  echo "installed /etc/sysctl.d/90-percore.conf"
elif ((changes > 0)); then
  echo "$changes setting(s) differ; run with --apply (as root) to change them"
fi
echo "limits: see tuning/limits.conf (login sessions) or tuning/percore.service (systemd)"
