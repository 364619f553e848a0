# shellcheck shell=sh
# rollback.sh PATH [PREVIOUS_RELEASE_ID]
#
# Puts PATH/current back on PATH/releases/PREVIOUS_RELEASE_ID in one rename,
# or removes PATH/current when PREVIOUS_RELEASE_ID is empty or left out (a
# failed first deployment leaves no `current`, as before it). Then runs the
# `after_activate` hooks in the release put back (none when there is none),
# their output on stderr.
# Prints on stdout, before the hooks run:
#   previous=<release id that was live, or empty>
# Appends "<UTC time> rollback <PREVIOUS_RELEASE_ID or -> previous=<id>" to
# PATH/.conveyor/revisions.log.
# Exit codes: see common.sh (2 usage, 3 release folder missing, 6 `current` is
# not Conveyor's, 7 a hook failed: `current` was put back all the same).
set -eu

check_count 1 2 $# "rollback.sh PATH [PREVIOUS_RELEASE_ID]"
path=$1
target=${2-}
check_path "$path"
[ -z "$target" ] || check_release_id "$target"

if [ -n "$target" ] && [ ! -d "$path/releases/$target" ]; then
    die 3 "the release folder $path/releases/$target is missing; cannot roll back to it"
fi
was=$(current_release "$path")

if [ -n "$target" ]; then
    switch_current "$path" "$target"
else
    rm -f "$path/current"
fi
printf 'previous=%s\n' "$was"
log_revision "$path" "rollback ${target:--} previous=$was"

if [ -n "$target" ]; then
    run_hooks after_activate "$path/releases/$target"
fi
