# shellcheck shell=sh
# probe.sh PATH SHA256 SIZE [look]
#
# Tells what a host has before a deployment, on stdout:
#   current=<live release id, or empty>
#   artifact=yes|no   (PATH/.conveyor/artifacts/SHA256.tar.gz is there, SIZE bytes long;
#                      prepare.sh verifies its sha256, once per deployment)
# Creates PATH/.conveyor/artifacts when missing, so that an upload can follow;
# with the fourth argument `look` (a plan), changes nothing at all.
# Exit codes: see common.sh (2 usage, 6 `current` is not Conveyor's).
set -eu

check_count 3 4 $# "probe.sh PATH SHA256 SIZE [look]"
path=$1
sha256=$2
size=$3
mode=${4-}
check_path "$path"
check_sha256 "$sha256"
case $size in
    '' | *[!0-9]*) die 2 "SIZE must be a number of bytes, got '$size'" ;;
esac
case $mode in
    '' | look) ;;
    *) die 2 "the fourth argument of probe.sh can only be 'look', got '$mode'" ;;
esac

current=$(current_release "$path")
if [ -z "$mode" ]; then
    mkdir -p "$path/.conveyor/artifacts"
fi

artifact=no
artifact_file=$path/.conveyor/artifacts/$sha256.tar.gz
if [ -f "$artifact_file" ] && [ "$(wc -c <"$artifact_file")" -eq "$size" ]; then
    artifact=yes
fi

printf 'current=%s\nartifact=%s\n' "$current" "$artifact"
