# shellcheck shell=sh
# probe.sh PATH SHA256
#
# Tells what a host has before a deployment, on stdout:
#   current=<live release id, or empty>
#   artifact=yes|no   (PATH/.conveyor/artifacts/SHA256.tar.gz exists and matches SHA256)
# Creates PATH/.conveyor/artifacts when missing, so that an upload can follow.
# Exit codes: see common.sh (2 usage, 6 `current` is not Conveyor's).
set -eu

check_count 2 2 $# "probe.sh PATH SHA256"
path=$1
sha256=$2
check_path "$path"
check_sha256 "$sha256"

current=$(current_release "$path")
mkdir -p "$path/.conveyor/artifacts"

artifact=no
artifact_file=$path/.conveyor/artifacts/$sha256.tar.gz
if [ -f "$artifact_file" ]; then
    actual=$(sha256sum <"$artifact_file")
    if [ "${actual%% *}" = "$sha256" ]; then
        artifact=yes
    fi
fi

printf 'current=%s\nartifact=%s\n' "$current" "$artifact"
