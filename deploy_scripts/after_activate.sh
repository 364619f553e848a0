# shellcheck shell=sh
# after_activate.sh PATH RELEASE_ID
#
# Runs after activate.sh has put PATH/releases/RELEASE_ID live, in that folder:
#   1. the `after_activate` hooks, in order (exit 7 on the first failure);
#   2. the health check, when `health_command` is set: up to `health_retries`
#      attempts in all, `health_interval` seconds apart, each stopped after
#      `health_timeout` seconds; exit 8 when none succeeds.
# Hook and health check output goes to stderr. Prints on stdout:
#   healthy=<attempts it took>   (when there is a health check)
# Changes nothing itself: a failure is undone by rollback.sh.
# Exit codes: see common.sh (2 usage, 3 release folder missing, 7 a hook
# failed, 8 the health check failed).
set -eu

check_count 2 2 $# "after_activate.sh PATH RELEASE_ID"
path=$1
release_id=$2
check_path "$path"
check_release_id "$release_id"
release=$path/releases/$release_id
[ -d "$release" ] || die 3 "the release folder $release is missing"

run_hooks after_activate "$release"

health_command=${health_command-}
[ -n "$health_command" ] || exit 0
retries=${health_retries:-1}
interval=${health_interval:-0}
limit=${health_timeout:-30}
for number in "$retries" "$interval" "$limit"; do
    case $number in
        '' | *[!0-9]*) die 2 "the health check settings must be whole numbers, got '$number'" ;;
    esac
done

attempt=1
while :; do
    status=0
    (cd "$release" && exec timeout -k 5 "$limit" sh -c "$health_command") >&2 || status=$?
    if [ "$status" -eq 0 ]; then
        printf 'healthy=%s\n' "$attempt"
        exit 0
    fi
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        reason="did not answer within ${limit}s"
    else
        reason="exit status $status"
    fi
    printf 'conveyor: health check attempt %s of %s failed: %s\n' "$attempt" "$retries" "$reason" >&2
    if [ "$attempt" -ge "$retries" ]; then
        die 8 "the health check failed $retries time(s), last: $reason: $health_command"
    fi
    attempt=$((attempt + 1))
    sleep "$interval"
done
