# shellcheck shell=sh
# prune.sh PATH KEEP [RELEASE_ID...]
#
# Removes old releases and artifacts under PATH:
#   - release folders beyond the newest KEEP (release ids sort by time), except
#     the live one (`current`), the previous one and any RELEASE_ID given;
#     "previous" is the release just before the live one in sort order (the
#     caller passes its own rollback target as RELEASE_ID when that differs);
#   - leftover temporary folders PATH/releases/.tmp-*, and the records in
#     PATH/.conveyor/releases/ of releases that are gone;
#   - artifacts in PATH/.conveyor/artifacts (SHA256.tar.gz and the plain
#     SHA256.tar beside it) that no remaining release was unpacked from
#     (prepare.sh records each release's sha256 in PATH/.conveyor/releases/),
#     plus leftover partial files (*.part) and what an interrupted incremental
#     prepare left (SHA256.files, SHA256.delta.tar, SHA256.stale). An artifact is never touched
#     otherwise: a redeploy finds it as it was.
# Prints one line per removal on stdout: "removed=<release id>",
# "removed_artifact=<file name>".
# Exit codes: see common.sh (2 usage, 6 `current` is not Conveyor's).
set -eu

check_count 2 1000 $# "prune.sh PATH KEEP [RELEASE_ID...]"
path=$1
keep=$2
shift 2
check_path "$path"
case $keep in
    '' | *[!0-9]* | 0) die 2 "KEEP must be a whole number of releases, at least 1, got '$keep'" ;;
esac
for protected in "$@"; do
    check_release_id "$protected"
done
protected=" $* "
releases=$path/releases
records=$path/.conveyor/releases
artifacts=$path/.conveyor/artifacts

live=$(current_release "$path")

# release_ids: the release folders, oldest first (LC_ALL=C sorts globs bytewise).
release_ids() {
    for dir in "$releases"/*; do
        name=${dir##*/}
        if [ -d "$dir" ] && [ ! -L "$dir" ] && is_release_id "$name"; then
            printf '%s\n' "$name"
        fi
    done
}

# previous_of LIVE: the release just before LIVE in sort order.
previous_of() {
    [ -n "$1" ] || return 0
    release_ids | awk -v live="$1" '$0 == live { print prev; exit } { prev = $0 }'
}

# remove_release ID: rename first, so that an interrupted removal leaves only a
# .tmp-* folder (removed by the next prune), never a half-deleted release.
remove_release() {
    mv -T "$releases/$1" "$releases/.tmp-$1"
    rm -rf "$releases/.tmp-${1:?}" "$records/${1:?}"
    printf 'removed=%s\n' "$1"
}

prune_releases() {
    previous=$(previous_of "$live")
    count=$(release_ids | wc -l)
    index=0
    for id in $(release_ids); do
        index=$((index + 1))
        if [ $((count - index)) -lt "$keep" ] || [ "$id" = "$live" ] || [ "$id" = "$previous" ]; then
            continue
        fi
        case $protected in *" $id "*) continue ;; esac
        remove_release "$id"
    done
}

# prune_leftovers: temporary folders of interrupted runs, and the artifact
# records of releases that are gone.
prune_leftovers() {
    for dir in "$releases"/.tmp-*; do
        if [ -e "$dir" ] || [ -L "$dir" ]; then
            rm -rf "$dir"
        fi
    done
    for record in "$records"/*; do
        name=${record##*/}
        if [ -f "$record" ] && is_release_id "$name" && [ ! -d "$releases/$name" ]; then
            rm -f "$record"
        fi
    done
}

# prune_artifacts: remove the artifacts (<sha256>.tar.gz, <sha256>.tar) that
# no remaining release record names, and partial files; other names are left
# alone.
prune_artifacts() {
    in_use=" "
    for record in "$records"/*; do
        if [ -f "$record" ] && is_release_id "${record##*/}"; then
            in_use="$in_use$(cat "$record") "
        fi
    done
    for file in "$artifacts"/*; do
        name=${file##*/}
        sha=${name%.files}
        sha=${sha%.delta.tar}
        sha=${sha%.stale}
        sha=${sha%.stale.part}
        if [ "$sha" != "$name" ] && is_sha256 "$sha"; then
            rm -f "$file"
            continue
        fi
        sha=${name%.part}
        sha=${sha%.gz}
        sha=${sha%.tar}
        if [ "$name" != "$sha.tar.gz" ] && [ "$name" != "$sha.tar" ]; then
            if is_sha256 "$sha" && [ "$name" != "${name%.part}" ]; then
                rm -f "$file"
            fi
        elif is_sha256 "$sha"; then
            case $in_use in
                *" $sha "*) ;;
                *) rm -f "$file"; printf 'removed_artifact=%s\n' "$name" ;;
            esac
        fi
    done
}

if [ -d "$releases" ]; then
    prune_releases
    prune_leftovers
fi
if [ -d "$artifacts" ]; then
    prune_artifacts
fi
