# shellcheck shell=sh
# Conveyor deploy scripts: helpers shared by every script.
#
# A host needs: a POSIX sh and awk, GNU coreutils (sha256sum, readlink, `mv -T`,
# timeout), GNU tar and gzip. openssl is used for sha256 when present (several
# times faster than sha256sum), never required.
#
# This file is never run on its own: Conveyor sends it over the SSH channel
# followed by one of the scripts (probe.sh, prepare.sh, ...), as one text on
# the standard input of `sh -s -- ARGS`. To try a script by hand on a host:
#   cat common.sh prepare.sh | sh -s -- /srv/shop SHA256 RELEASE_ID
#
# Exit codes shared by all scripts:
#   0  done
#   1  a command failed (see the message above it)
#   2  usage: missing or malformed argument
#   3  a release or artifact is missing, or the artifact's sha256 does not match
#   4  the artifact is unsafe (absolute name, "..", link leading out, device...)
#   5  the release folder already exists
#   6  the layout on the host is not Conveyor's (e.g. `current` is not a link),
#      or discard.sh was asked to remove the live release
#   7  a hook (before_activate, after_activate) failed, or a shared entry is missing
#   8  the health check failed every attempt
#   9  the artifact is not on the host (prepare.sh: upload it, then try again)
#
# Values that are not plain (hook commands, shared entries, the health check)
# arrive as shell variables set in front of the script, never as arguments:
#   <name>_count=N and <name>_1 .. <name>_N for a list (hooks, shared),
#   health_command, health_retries, health_interval, health_timeout.
set -eu
LC_ALL=C
export LC_ALL
umask 022

# die CODE MESSAGE...: print "conveyor: MESSAGE" on stderr and exit with CODE.
die() {
    die_code=$1
    shift
    printf 'conveyor: %s\n' "$*" >&2
    exit "$die_code"
}

# check_count EXPECTED_MIN EXPECTED_MAX GIVEN USAGE: the number of arguments.
check_count() {
    if [ "$3" -lt "$1" ] || [ "$3" -gt "$2" ]; then
        die 2 "usage: $4"
    fi
}

# check_path PATH: an absolute, normalised path of plain characters, not "/".
check_path() {
    case $1 in
        /*) ;;
        *) die 2 "the deploy path must be absolute, got '$1'" ;;
    esac
    case $1 in
        / | */ | *//* | */./* | */. | */../* | */.. | *[!A-Za-z0-9._/@+-]*)
            die 2 "the deploy path must be a normalised path of letters, digits and ._/@+-, got '$1'" ;;
    esac
}

# is_sha256 VALUE: true when VALUE is 64 lowercase hexadecimal digits.
is_sha256() {
    case $1 in
        *[!0-9a-f]* | '') return 1 ;;
    esac
    [ "${#1}" -eq 64 ]
}

# check_sha256 VALUE: die with a usage error unless VALUE is a sha256.
check_sha256() {
    is_sha256 "$1" || die 2 "a sha256 must be 64 lowercase hexadecimal digits, got '$1'"
}

# is_release_id VALUE: true when VALUE matches ^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{7,40}$.
is_release_id() {
    case $1 in
        [0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z-*) ;;
        *) return 1 ;;
    esac
    release_sha=${1#*-}
    case $release_sha in
        *[!0-9a-f]* | '') return 1 ;;
    esac
    [ "${#release_sha}" -ge 7 ] && [ "${#release_sha}" -le 40 ]
}

# check_release_id VALUE: die with a usage error unless VALUE is a release id.
check_release_id() {
    is_release_id "$1" || die 2 "a release id looks like 20261128T221500Z-abc1234, got '$1'"
}

# current_release PATH: print the id of the live release (nothing when there is
# no `current`); die when `current` is not a link to releases/<release-id>.
current_release() {
    current_link=$1/current
    if [ -L "$current_link" ]; then
        current_target=$(readlink "$current_link")
        case $current_target in
            releases/*) current_id=${current_target#releases/} ;;
            *) die 6 "$current_link points to '$current_target', not to releases/<release-id>" ;;
        esac
        is_release_id "$current_id" \
            || die 6 "$current_link points to '$current_target', not to releases/<release-id>"
        printf '%s\n' "$current_id"
    elif [ -e "$current_link" ]; then
        die 6 "$current_link exists and is not a symbolic link; move it away first"
    fi
}

# switch_current PATH RELEASE_ID: point PATH/current at releases/RELEASE_ID in one
# rename, so that a reader always finds either the old or the new link.
switch_current() {
    switch_tmp=$1/.current-$2.tmp
    rm -f "$switch_tmp"
    ln -s "releases/$2" "$switch_tmp"
    mv -T "$switch_tmp" "$1/current"
}

# log_revision PATH WORDS...: append "<UTC time> WORDS" to PATH/.conveyor/revisions.log.
log_revision() {
    log_path=$1
    shift
    mkdir -p "$log_path/.conveyor"
    printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$log_path/.conveyor/revisions.log"
}

# sha256_of FILE: print the sha256 of FILE.
sha256_of() {
    if command -v openssl >/dev/null 2>&1; then
        sha256_line=$(openssl dgst -sha256 -r <"$1") || return 1
    else
        sha256_line=$(sha256sum <"$1") || return 1
    fi
    printf '%s\n' "${sha256_line%% *}"
}

# list_item NAME I: print the I-th item of the list NAME (see the header).
list_item() {
    eval "printf '%s' \"\${${1}_$2-}\""
}

# list_count NAME: the number of items in the list NAME (0 when it is not set).
list_count() {
    list_count_value=
    eval "list_count_value=\${${1}_count:-0}"
    case $list_count_value in
        '' | *[!0-9]*) die 2 "${1}_count must be a number, got '$list_count_value'" ;;
    esac
    printf '%s\n' "$list_count_value"
}

# run_hooks NAME DIR: run each command of the list NAME with `sh -c` in DIR, in
# order, their output on stderr (stdout carries this script's fields); die 7
# naming the first one that fails.
run_hooks() {
    hooks_total=$(list_count "$1")
    hooks_index=1
    while [ "$hooks_index" -le "$hooks_total" ]; do
        hook=$(list_item "$1" "$hooks_index")
        printf 'conveyor: %s[%s]: %s\n' "$1" "$hooks_index" "$hook" >&2
        hook_status=0
        (cd "$2" && exec sh -c "$hook") >&2 || hook_status=$?
        if [ "$hook_status" -ne 0 ]; then
            die 7 "the $1 hook $hooks_index failed with exit status $hook_status: $hook"
        fi
        hooks_index=$((hooks_index + 1))
    done
}

# tree_listing DIR: one line "MODE SIZE ./NAME [TARGET]" per entry under DIR
# (MODE as `ls -l` shows it, TARGET for a link), from stat alone: GNU find
# when the host has it, else GNU tar writing to /dev/null (it reads no file's
# content then), which is slower.
tree_listing() {
    if find "$1" -maxdepth 0 -printf '' 2>/dev/null; then
        (cd "$1" && find . -printf '%M %s %p %l\n')
    else
        (cd "$1" && tar --numeric-owner --hard-dereference -cvvf /dev/null .) | awk '{
            if (substr($1, 1, 1) == "l" && NF == 8) print $1, $3, $6, $8
            else if (NF == 6) print $1, $3, $6
            else print $0
        }'
    fi
}

# compare_tree MODE FILES OLD RECEIVED SUMS [STALE]: compare a tree_listing (on stdin)
# with the list of files FILES (see workers/manifest.py), where OLD is the list
# of the release the tree came from, RECEIVED the names (one a line) sent anew
# and SUMS their `sha256sum` lines. A file of FILES is held when OLD lists it
# the same and the tree holds a regular file of its size and mode there.
#   lacks:  print the files of FILES the tree does not hold (and write in the
#           file STALE what `stale` would print were those the files received);
#   stale:  print the entries of the tree to remove before the received files
#           are unpacked: those FILES does not list as they are, those that
#           will be received, and .conveyor-files;
#   verify: print each difference between the tree and FILES, and exit 1 when
#           there is one (each received file's sha256 is checked too).
compare_tree() {
    awk -v mode="$1" -v files="$2" -v old="$3" -v received="$4" -v sums="$5" -v stale="${6-}" '
        function perms(kind, bits) {
            if (kind == "d") return "drwxr-xr-x"
            if (kind == "l") return "lrwxrwxrwx"
            return bits == "755" ? "-rwxr-xr-x" : "-rw-r--r--"
        }
        function read_list(name, lines, kinds,    line, count, f) {
            count = 0
            while ((getline line < name) > 0) {
                if (++count == 1) {
                    if (line != "conveyor-files 1") return 0
                    continue
                }
                split(line, f, "\t")
                lines[f[5]] = line
                if (kinds != "") { kind[f[5]] = f[1]; bits[f[5]] = f[2]; size[f[5]] = f[3]; value[f[5]] = f[4] }
            }
            close(name)
            return count > 0
        }
        function bad(name, why) {
            if (mode == "verify") printf "  %s: %s\n", name, why
            problems = 1
        }
        BEGIN {
            if (!read_list(files, new, "yes")) { print "  the list of files cannot be read"; exit 2 }
            if (old != "" && !read_list(old, before, "")) split("", before)
            count = split(received, names, "\n")
            for (i = 1; i <= count; i++) if (names[i] != "") got[names[i]] = 1
        }
        {
            # mode size name [target]: a name that is not plain (a space) cannot
            # be compared, nor removed safely: lacks and stale give up (exit 3)
            type = substr($1, 1, 1)
            if (NF != (type == "l" ? 4 : 3)) {
                if (mode != "verify") { odd = 1; exit 3 }
                bad($0, "cannot be read in the listing")
                next
            }
            rest = $3
            target = type == "l" ? $4 : ""
            sub(/^\.\//, "", rest)
            sub(/\/$/, "", rest)
            if (rest == "" || rest == ".") next
            if (rest == ".conveyor-files") {
                if (mode == "stale") print rest
                if (mode == "lacks" && stale != "") print rest > stale
                next
            }
            seen[rest] = 1
            held = (rest in kind) && $1 == perms(kind[rest], bits[rest])
            if (held && kind[rest] == "f") held = $2 == size[rest]
            if (held && kind[rest] == "l") held = target == value[rest]
            if (held && kind[rest] == "f" && !(rest in got)) held = before[rest] == new[rest]
            if (mode == "lacks") {
                if (!held) stale_name[rest] = 1
                if (!held && stale != "") print rest > stale
            } else if (mode == "stale") {
                if (!held || (rest in got)) print rest
            } else if (!held) {
                bad(rest, (rest in kind) ? "differs from the list" : "is not in the list")
            }
        }
        END {
            if (odd) exit 3
            if (mode == "lacks") {
                for (name in kind)
                    if (kind[name] == "f" && (!(name in seen) || (name in stale_name))) print name
                exit 0
            }
            if (mode != "verify") exit 0
            for (name in kind) if (!(name in seen)) bad(name, "is missing")
            count = split(sums, line, "\n")
            for (i = 1; i <= count; i++) {
                if (line[i] == "") continue
                sum = substr(line[i], 1, 64)
                name = substr(line[i], 67)
                if (kind[name] != "f" || sum != value[name]) bad(name, "was received damaged")
                checked[name] = 1
            }
            for (name in got) if (!(name in checked)) bad(name, "was received but not checked")
            exit problems
        }
    '
}
