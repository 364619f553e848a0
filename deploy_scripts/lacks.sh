# shellcheck shell=sh
# lacks.sh PATH SHA256
#
# Says which files of the artifact SHA256 this host lacks, given the release
# live now, so that only those are sent (an incremental deployment). Reads the
# artifact's list of files, uploaded first to
# PATH/.conveyor/artifacts/SHA256.files (see workers/manifest.py), and the
# list the live release holds (PATH/releases/<live>/.conveyor-files). A file
# is held when both lists name it with the same sha256, size and mode and the
# live release holds a regular file of that size and mode there (from stat
# alone: nothing is read); every other file is lacking. Writes, for prepare.sh,
# PATH/.conveyor/artifacts/SHA256.stale: the entries of the live release that
# the new one does not hold as they are (removed from its hard-linked copy).
# Prints on stdout:
#   previous=<release id live now, or empty>
#   usable=yes|no        (no: no live release, it has no list of files, or it
#                         holds a name that is not plain; the whole artifact
#                         is to be sent)
#   then, when usable, one line per lacking file: lacks=<name>
# Exit codes: see common.sh (2 usage, 6 `current` is not Conveyor's, 9 the
# list of files is not on the host).
set -eu

check_count 2 2 $# "lacks.sh PATH SHA256"
path=$1
sha256=$2
check_path "$path"
check_sha256 "$sha256"

files=$path/.conveyor/artifacts/$sha256.files
previous=$(current_release "$path")
printf 'previous=%s\n' "$previous"
[ -f "$files" ] || die 9 "the list of files $files is missing; upload it first"
release=$path/releases/$previous
old=$release/.conveyor-files
if [ -z "$previous" ] || [ ! -d "$release" ] || [ -L "$old" ] || [ ! -f "$old" ]; then
    printf 'usable=no\n'
    exit 0
fi
listing=$(tree_listing "$release") || {
    printf 'usable=no\n'
    exit 0
}
stale=$path/.conveyor/artifacts/$sha256.stale
if ! lacking=$(printf '%s\n' "$listing" | compare_tree lacks "$files" "$old" "" "" "$stale.part"); then
    rm -f "$stale.part"
    printf 'usable=no\n'  # a list that cannot be read, or a name that is not plain
    exit 0
fi
: >>"$stale.part"
mv -f "$stale.part" "$stale"
printf 'usable=yes\n'
if [ -n "$lacking" ]; then
    printf '%s\n' "$lacking" | awk '{ print "lacks=" $0 }'
fi
