# shellcheck shell=sh
# discard.sh PATH RELEASE_ID
#
# Removes a release that will not stay live (a deployment that failed before
# activation, or one rolled back): PATH/releases/RELEASE_ID, its record in
# PATH/.conveyor/releases/ and the temporary folder an interrupted prepare.sh
# left. Never removes the live release
# (exit 6). A release that is not there is not an error, so discarding twice
# is harmless.
# Prints on stdout: "discarded=<release id>" when a folder was removed.
# Exit codes: see common.sh (2 usage, 6 the release is live or `current` is not
# Conveyor's).
set -eu

check_count 2 2 $# "discard.sh PATH RELEASE_ID"
path=$1
release_id=$2
check_path "$path"
check_release_id "$release_id"

release=$path/releases/$release_id
live=$(current_release "$path")
if [ "$live" = "$release_id" ]; then
    die 6 "the release $release_id is live on this host; roll back before discarding it"
fi

rm -f "$path/.conveyor/releases/$release_id"
rm -rf "$path/releases/.tmp-$release_id"
if [ -d "$release" ] && [ ! -L "$release" ]; then
    # Renamed first, so that an interrupted removal leaves only a .tmp-* folder.
    mv -T "$release" "$path/releases/.tmp-$release_id"
    rm -rf "$path/releases/.tmp-$release_id"
    printf 'discarded=%s\n' "$release_id"
fi
