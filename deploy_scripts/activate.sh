# shellcheck shell=sh
# activate.sh PATH RELEASE_ID
#
# Puts PATH/releases/RELEASE_ID live: PATH/current becomes the relative link
# releases/RELEASE_ID in one rename (a new link renamed over the old one with
# `mv -T`), so `current` is never missing nor half-made.
# Prints on stdout:
#   previous=<release id that was live, or empty on a first deployment>
# Appends "<UTC time> activate RELEASE_ID previous=<id>" to
# PATH/.conveyor/revisions.log.
# Exit codes: see common.sh (2 usage, 3 release folder missing, 6 `current` is
# not Conveyor's).
# The after_activate hooks and the health check follow as their own step
# (after_activate.sh), so that a failing hook is told apart from a failed switch.
set -eu

check_count 2 2 $# "activate.sh PATH RELEASE_ID"
path=$1
release_id=$2
check_path "$path"
check_release_id "$release_id"

[ -d "$path/releases/$release_id" ] \
    || die 3 "the release folder $path/releases/$release_id is missing; prepare it first"
previous=$(current_release "$path")

switch_current "$path" "$release_id"
printf 'previous=%s\n' "$previous"
log_revision "$path" "activate $release_id previous=$previous"

