# shellcheck shell=sh
# inspect.sh PATH
#
# Tells whether this host has what a deployment to PATH needs, changing
# nothing. Prints one line per item on stdout, `name=yes` or `name=no`:
#   sh, awk, tar (GNU tar), gzip, sha256sum, timeout, coreutils (GNU mv -T,
#   readlink), openssl (optional: a faster sha256)
# and one line for PATH:
#   path=writable    PATH exists and can be written
#   path=creatable   PATH is missing and its nearest existing parent can be written
#   path=readonly:<folder>   <folder> (PATH or its nearest existing parent) cannot be written
# Exit codes: see common.sh (2 usage).
set -eu

check_count 1 1 $# "inspect.sh PATH"
path=$1
check_path "$path"

has() {
    if command -v "$1" >/dev/null 2>&1; then echo yes; else echo no; fi
}

gnu() {
    if "$1" --version 2>/dev/null | grep -q "$2"; then echo yes; else echo no; fi
}

printf 'sh=yes\n'
printf 'awk=%s\n' "$(has awk)"
printf 'tar=%s\n' "$(gnu tar 'GNU tar')"
printf 'gzip=%s\n' "$(has gzip)"
printf 'sha256sum=%s\n' "$(has sha256sum)"
printf 'timeout=%s\n' "$(has timeout)"
printf 'coreutils=%s\n' "$(gnu mv 'GNU coreutils')"
printf 'openssl=%s\n' "$(has openssl)"

folder=$path
while [ ! -e "$folder" ]; do
    folder=$(dirname "$folder")
done
if [ -d "$folder" ] && [ -w "$folder" ]; then
    if [ "$folder" = "$path" ]; then
        printf 'path=writable\n'
    else
        printf 'path=creatable\n'
    fi
else
    printf 'path=readonly:%s\n' "$folder"
fi
