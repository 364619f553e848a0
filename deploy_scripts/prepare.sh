# shellcheck shell=sh
# prepare.sh PATH SHA256 RELEASE_ID
#
# Unpacks the uploaded artifact PATH/.conveyor/artifacts/SHA256.tar.gz into
# PATH/releases/RELEASE_ID, which goes live later with activate.sh:
#   1. verify the artifact's sha256;
#   2. list it and refuse it whole (exit 4, nothing written) when a member has an
#      absolute name or a ".." component, is a symbolic or hard link whose target
#      is absolute or contains "..", is set-user/group-id, or is anything but a
#      regular file, folder or link (devices, fifos...);
#   3. unpack into PATH/releases/.tmp-RELEASE_ID and rename that to
#      PATH/releases/RELEASE_ID: a release folder is never half-written.
# On any failure the temporary folder is removed.
# Records the artifact of the release in PATH/.conveyor/releases/RELEASE_ID
# (its sha256), which prune.sh reads to keep the live artifact.
# Exit codes: see common.sh (2 usage, 3 artifact missing or corrupt, 4 unsafe
# artifact, 5 release folder already exists).
set -eu

check_count 3 3 $# "prepare.sh PATH SHA256 RELEASE_ID"
path=$1
sha256=$2
release_id=$3
check_path "$path"
check_sha256 "$sha256"
check_release_id "$release_id"

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

[ -f "$artifact" ] || die 3 "the artifact $artifact is missing; upload it first"
actual=$(sha256sum <"$artifact")
actual=${actual%% *}
[ "$actual" = "$sha256" ] \
    || die 3 "the artifact $artifact is corrupt: its sha256 is $actual, expected $sha256"
if [ -e "$release" ] || [ -L "$release" ]; then
    die 5 "the release folder $release already exists (a retry?); deploy under a new release id"
fi

listing=$(tar -P --numeric-owner -tzvf "$artifact") \
    || die 3 "the artifact $artifact cannot be listed by tar"
if ! unsafe=$(check_members "$listing"); then
    die 4 "the artifact $artifact is refused, nothing was unpacked:
$unsafe"
fi

mkdir -p "$path/releases" "$path/.conveyor/releases"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 143' HUP INT TERM
mkdir "$tmp"
tar -xzf "$artifact" -C "$tmp" --no-same-owner --no-same-permissions
printf '%s\n' "$sha256" >"$path/.conveyor/releases/$release_id"
mv -T "$tmp" "$release"
trap - EXIT HUP INT TERM

# ---------------------------------------------------------------------------
# LATER: link PATH/shared entries into "$release" and run the before_activate
# hooks here (in "$release", with the CONVEYOR_* variables exported by the
# preamble, stdin already /dev/null). A failure must exit non-zero; the caller
# then runs discard.sh for this release (harmless when nothing is there).
# ---------------------------------------------------------------------------

printf 'release=%s\n' "$release_id"
