# shellcheck shell=sh
# prepare.sh PATH SHA256 RELEASE_ID [FROM FILES_SHA256]
#
# Unpacks the uploaded artifact PATH/.conveyor/artifacts/SHA256.tar.gz into
# PATH/releases/RELEASE_ID, which goes live later with activate.sh:
#   1. verify the artifact's sha256 (exit 9 when it is not on the host, 3 when
#      it is corrupt: the caller uploads it and runs prepare.sh again, so a
#      deployment tries prepare first and sends the artifact only where needed);
#   2. decompress it, once per artifact: the plain tar is kept beside it as
#      PATH/.conveyor/artifacts/SHA256.tar, so that a redeploy inflates
#      nothing (it is derived on the host from the verified artifact, and
#      trusted as the release folders are);
#   3. list it and refuse it whole (exit 4, nothing written, the plain tar
#      removed) when a member has an absolute name or a ".." component, is a
#      symbolic or hard link whose target is absolute or contains "..", is
#      set-user/group-id, or is anything but a regular file, folder or link;
#   4. unpack into PATH/releases/.tmp-RELEASE_ID and rename that to
#      PATH/releases/RELEASE_ID: a release folder is never half-written;
#   5. link each entry of the list `shared` (see common.sh) from PATH/shared:
#      whatever the release holds at that name is replaced by a symbolic link to
#      PATH/shared/<entry>; a missing entry ending in "/" is made as an empty
#      folder, any other missing entry fails (exit 7);
#   6. run the `before_activate` hooks in the release folder (exit 7 on failure).
# With FROM (an incremental deployment), steps 1 to 4 are instead: assemble
# PATH/releases/.tmp-RELEASE_ID from the release FROM (hard links of the files
# it holds as the artifact's list of files says) and the files received in
# PATH/.conveyor/artifacts/SHA256.delta.tar (a plain tar, checked as in 3),
# then check the result against the list, PATH/.conveyor/artifacts/SHA256.files,
# whose own sha256 is FILES_SHA256: every entry there with its type, mode, size
# or link target, nothing more, and each received file's sha256. Any mismatch
# exits 3 (send the whole artifact then); both files are removed at the end.
# Files linked from FROM are shared with it: a hook that edits a file in place
# edits it in both (write a new file and rename it over instead).
# On any failure, the temporary files and the release folder are removed:
# nothing is left but the artifact (and its plain tar, unless refused).
# Records the artifact of the release in PATH/.conveyor/releases/RELEASE_ID
# (its sha256), which prune.sh reads to keep the live artifact.
# Hooks see CONVEYOR_PREVIOUS_RELEASE_PATH set here, from the live release.
# Prints on stdout:
#   previous=<release id live now, or empty>
#   release=<RELEASE_ID>            (once prepared)
# Exit codes: see common.sh (2 usage, 3 artifact corrupt, 4 unsafe artifact,
# 5 release folder already exists, 7 a hook failed or a shared entry is
# missing, 9 the artifact is not on the host).
set -eu

check_count 3 5 $# "prepare.sh PATH SHA256 RELEASE_ID [FROM FILES_SHA256]"
[ $# -ne 4 ] || die 2 "usage: prepare.sh PATH SHA256 RELEASE_ID [FROM FILES_SHA256]"
path=$1
sha256=$2
release_id=$3
from=${4-}
files_sha256=${5-}
check_path "$path"
check_sha256 "$sha256"
check_release_id "$release_id"
if [ -n "$from" ]; then
    check_release_id "$from"
    check_sha256 "$files_sha256"
fi

artifact=$path/.conveyor/artifacts/$sha256.tar.gz
release=$path/releases/$release_id
tmp=$path/releases/.tmp-$release_id

# check_members LISTING: print the members of a `tar -tv` LISTING that are
# unsafe, each with the reason; exit status 1 when there is one.
check_members() {
    printf '%s\n' "$1" | awk '
        BEGIN {
            # mode, uid/gid, size, date, time: one strict shape, so that the
            # name is never misread; a line of another shape is refused.
            prefix = "^[^ ]+ [0-9]+/[0-9]+ +[0-9]+ "
            prefix = prefix "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] "
            prefix = prefix "[0-9][0-9]:[0-9][0-9](:[0-9][0-9])? "
        }
        {
            type = substr($0, 1, 1)
            reason = ""
            rest = $0
            if (type != "-" && type != "d" && type != "l" && type != "h")
                reason = "is not a regular file, folder or link"
            else if (!match($0, prefix))
                reason = "cannot be checked (unexpected listing)"
            else {
                rest = substr($0, RLENGTH + 1)
                reason = check(type, substr($0, 1, 10), rest)
            }
            if (reason != "") {
                printf "  %s: %s\n", rest, reason
                bad = 1
            }
        }
        function check(type, mode, rest) {
            if (substr(mode, 4, 1) ~ /[sS]/ || substr(mode, 7, 1) ~ /[sS]/)
                return "is set-user-id or set-group-id"
            if (rest ~ /^\//)
                return "has an absolute name"
            if ((type == "l" && rest ~ / -> \//) || (type == "h" && rest ~ / link to \//))
                return "is a link to an absolute path"
            if (type != "-" && type != "d" && rest ~ /(^|\/| )\.\.(\/| |$)/)
                return "is a link whose name or target has a .. component"
            if (rest ~ /(^|\/)\.\.(\/|$)/)
                return "has a .. component"
            return ""
        }
        END { exit bad }
    '
}

# link_shared RELEASE: replace each shared entry in RELEASE by a link to PATH/shared.
link_shared() {
    shared_total=$(list_count shared)
    shared_index=1
    while [ "$shared_index" -le "$shared_total" ]; do
        entry=$(list_item shared "$shared_index")
        name=${entry%/}
        check_shared "$name"
        source=$path/shared/$name
        if [ ! -e "$source" ]; then
            case $entry in
                */) mkdir -p "$source" ;;
                *) die 7 "the shared entry $source is missing; create it on the host (or write '$name/' to have a folder made)" ;;
            esac
        fi
        rm -rf "${1:?}/$name"
        mkdir -p "$(dirname "$1/$name")"
        ln -s "$source" "$1/$name"
        shared_index=$((shared_index + 1))
    done
}

# check_shared NAME: a relative, normalised name of plain characters.
check_shared() {
    case $1 in
        '' | /* | . | .. | ./* | ../* | */. | */.. | */./* | */../* | *//* | *[!A-Za-z0-9._/@+-]*)
            die 2 "a shared entry must be a relative path of letters, digits and ._/@+-, got '$1'" ;;
    esac
}

# assemble: PATH/releases/.tmp-RELEASE_ID from the release FROM and the files
# received (see the header); exit 3 when the result does not match the list.
assemble() {
    source_release=$path/releases/$from
    [ -f "$delta" ] || die 9 "the changed files $delta are missing; upload them first"
    [ -f "$files" ] || die 9 "the list of files $files is missing; upload it first"
    actual=$(sha256_of "$files") || die 3 "the list of files $files cannot be read"
    [ "$actual" = "$files_sha256" ] \
        || die 3 "the list of files $files is corrupt: its sha256 is $actual, expected $files_sha256"
    if [ ! -d "$source_release" ] || [ -L "$source_release" ]; then
        die 3 "the release $from to assemble from is gone"
    fi
    received=$(tar -P --numeric-owner -tvf "$delta") \
        || die 3 "the changed files $delta cannot be listed by tar"
    if ! unsafe=$(check_members "$received"); then
        die 4 "the changed files $delta are refused, nothing was unpacked:
$unsafe"
    fi
    received=$(tar -tf "$delta")
    old=$source_release/.conveyor-files
    mkdir -p "$path/.conveyor/releases"
    cp -al "$source_release" "$tmp"
    # What lacks.sh found in FROM moments ago, else a look now; the received files
    # are removed in any case: a hard link is never written through.
    if [ -f "$stale_list" ]; then
        stale=$(cat "$stale_list")
    else
        stale=$(tree_listing "$tmp" | compare_tree stale "$files" "$old" "$received" "") \
            || die 3 "the release $from cannot be compared with the list of files"
    fi
    stale="$stale
$received"
    saved_ifs=$IFS
    IFS='
'
    set -f
    # shellcheck disable=SC2086 # one name a line, plain names, globbing off
    (cd "$tmp" && rm -rf -- $stale)
    tar -xf "$delta" -C "$tmp" --no-same-owner --no-same-permissions
    folders=$(awk -F '\t' 'NR > 1 && $1 == "d" { print $5 }' "$files")
    # shellcheck disable=SC2086 # as above
    if [ -n "$folders" ]; then (cd "$tmp" && mkdir -p -- $folders); fi
    # shellcheck disable=SC2086 # as above
    sums=$(cd "$tmp" && if [ -n "$received" ]; then sha256sum -- $received; fi) \
        || die 3 "the changed files cannot be read back"
    set +f
    IFS=$saved_ifs
    awk -F '\t' 'NR > 1 && $1 == "l" { print $4 "\t" $5 }' "$files" |
        while IFS="$(printf '\t')" read -r target name; do
            [ -L "$tmp/$name" ] || [ -e "$tmp/$name" ] || ln -s "$target" "$tmp/$name"
        done
    cp "$files" "$tmp/.conveyor-files"
    if ! differences=$(tree_listing "$tmp" | compare_tree verify "$files" "$old" "$received" "$sums"); then
        die 3 "the release assembled from $from does not match the list of files:
$(printf '%s\n' "$differences" | head -n 5)"
    fi
}

# unpack: PATH/releases/.tmp-RELEASE_ID from the whole artifact (steps 1 to 4).
unpack() {
    if [ ! -f "$artifact" ]; then
        mkdir -p "$path/.conveyor/artifacts"
        die 9 "the artifact $artifact is missing; upload it first"
    fi
    actual=$(sha256_of "$artifact") || die 3 "the artifact $artifact cannot be read"
    [ "$actual" = "$sha256" ] \
        || die 3 "the artifact $artifact is corrupt: its sha256 is $actual, expected $sha256"
    # Inflated once per artifact: listing and unpacking a plain tar cost no inflate.
    if [ ! -f "$plain" ]; then
        gzip -dc <"$artifact" >"$plain.part" \
            || die 3 "the artifact $artifact cannot be listed by tar (gzip cannot read it)"
        mv -f "$plain.part" "$plain"
    fi
    listing=$(tar -P --numeric-owner -tvf "$plain") \
        || die 3 "the artifact $artifact cannot be listed by tar"
    if ! unsafe=$(check_members "$listing"); then
        rm -f "$plain"
        die 4 "the artifact $artifact is refused, nothing was unpacked:
$unsafe"
    fi
    mkdir -p "$path/releases" "$path/.conveyor/releases"
    mkdir "$tmp"
    tar -xf "$plain" -C "$tmp" --no-same-owner --no-same-permissions
}

# cleanup: what a failed prepare leaves behind is removed (run on exit).
cleanup() {
    rm -rf "$tmp" "$plain.part"
    if [ -n "$from" ]; then
        rm -f "$delta" "$files" "$stale_list"
    fi
    if [ -n "$made" ]; then
        rm -f "$path/.conveyor/releases/$release_id"
        mv -T "$made" "$tmp" 2>/dev/null && rm -rf "$tmp"
    fi
}

previous=$(current_release "$path")
printf 'previous=%s\n' "$previous"
CONVEYOR_PREVIOUS_RELEASE_PATH=${previous:+$path/releases/$previous}
export CONVEYOR_PREVIOUS_RELEASE_PATH

if [ -e "$release" ] || [ -L "$release" ]; then
    die 5 "the release folder $release already exists (a retry?); deploy under a new release id"
fi

plain=${artifact%.gz}
delta=$path/.conveyor/artifacts/$sha256.delta.tar
files=$path/.conveyor/artifacts/$sha256.files
stale_list=$path/.conveyor/artifacts/$sha256.stale
made=
trap cleanup EXIT
trap 'exit 143' HUP INT TERM
rm -rf "$tmp"
if [ -n "$from" ]; then
    assemble
else
    unpack
fi
printf '%s\n' "$sha256" >"$path/.conveyor/releases/$release_id"
mv -T "$tmp" "$release"
made=$release

link_shared "$release"
run_hooks before_activate "$release"

made=
trap - EXIT HUP INT TERM
if [ -n "$from" ]; then
    rm -f "$delta" "$files" "$stale_list"
fi
printf 'release=%s\n' "$release_id"
