#@ file-only
# shellcheck shell=sh
# The helpers of install.sh and remove.sh: render.py puts them into both, right after the
# values. A helper that depends on trustUseSudo is here twice, once per value; a rendered
# script holds one of them.
#@ end
trust_die() {
  printf 'registry-mirror: %s\n' "$*" >&2
  exit 1
}
trust_say() {
  printf 'registry-mirror: %s\n' "$*"
}
T_TMP=$(mktemp -d "${TMPDIR:-/tmp}/registry-mirror.XXXXXX")
trap 'rm -rf "$T_TMP"' EXIT
trap 'exit 1' HUP INT TERM
T_USER=$(id -un 2>/dev/null || id -u)

# trust_first FILE STATUS: the first line of FILE, or "exit status STATUS" when it is empty.
trust_first() {
  T_LINE=$(sed -n 1p "$1")
  if [ -n "$T_LINE" ]; then
    printf '%s' "$T_LINE"
  else
    printf 'exit status %s' "$2"
  fi
}

# trust_writable PATH: true when this user may create, replace or delete PATH: PATH itself
# (when it exists) and its nearest existing parent directory are writable. T_BLOCKER names
# the first of them that is not.
trust_writable() {
  T_BLOCKER=$1
  if [ -e "$1" ] && [ ! -w "$1" ]; then
    return 1
  fi
  T_BLOCKER=$(dirname "$1")
  while [ ! -d "$T_BLOCKER" ]; do
    T_BLOCKER=$(dirname "$T_BLOCKER")
  done
  [ -w "$T_BLOCKER" ] && [ -x "$T_BLOCKER" ]
}

#@ if sudo
# trust_privilege PATH: T_PRIV=1 when PATH must be written through `sudo -n`, 0 when this
# user can write it. sudo only ever runs with -n (never a prompt that would hang pulumi); it
# is tried once, before the first change.
T_SUDO_CHECKED=0
#@ file-only
# shellcheck disable=SC2317 # shellcheck sees the variant after #@ else replace this one
#@ end
trust_privilege() {
  T_PRIV=0
  if trust_writable "$1"; then
    return 0
  fi
  if [ "$T_SUDO_CHECKED" = 0 ]; then
    T_RC=0
    sudo -n true 2>"$T_TMP/err" || T_RC=$?
    if [ "$T_RC" != 0 ]; then
      trust_die "cannot write $1 as $T_USER ($T_BLOCKER is not writable) and sudo -n failed ($(trust_first "$T_TMP/err" "$T_RC")); run: sudo -v, then run pulumi again from the same terminal"
    fi
    T_SUDO_CHECKED=1
  fi
  T_PRIV=1
}
#@ else
# trust_privilege PATH: T_PRIV=0 when this user can write PATH; otherwise stop with one line
# (registry-mirror:trustUseSudo is false, so sudo is never used).
trust_privilege() {
  T_PRIV=0
  if trust_writable "$1"; then
    return 0
  fi
  trust_die "cannot write $1 as $T_USER ($T_BLOCKER is not writable); run: pulumi config set registry-mirror:trustUseSudo true && sudo -v, then run pulumi again"
}
#@ end

#@ if sudo
#@ file-only
# shellcheck disable=SC2317 # shellcheck sees the variant after #@ else replace this one
#@ end
# trust_try PRIV CMD...: run CMD (through `sudo -n` when PRIV is 1); its stderr is kept in
# $T_TMP/err, its exit status in T_RC and its words in T_CMD.
trust_try() {
  T_RC=0
  if [ "$1" = 1 ]; then
    shift
    T_CMD="sudo -n $*"
    sudo -n "$@" 2>"$T_TMP/err" || T_RC=$?
  else
    shift
    T_CMD="$*"
    "$@" 2>"$T_TMP/err" || T_RC=$?
  fi
}
#@ else
# trust_try PRIV CMD...: run CMD as this user (PRIV is always 0 here); its stderr is kept in
# $T_TMP/err, its exit status in T_RC and its words in T_CMD.
trust_try() {
  shift
  T_RC=0
  T_CMD="$*"
  "$@" 2>"$T_TMP/err" || T_RC=$?
}
#@ end

# trust_run PRIV CMD...: trust_try; on failure one line on stderr and exit.
trust_run() {
  trust_try "$@"
  if [ "$T_RC" != 0 ]; then
    trust_die "$T_CMD failed: $(trust_first "$T_TMP/err" "$T_RC")"
  fi
  cat "$T_TMP/err" >&2
}

# trust_read PATH COPY: T_READ names a file with PATH's bytes that this user can read.
trust_read() {
  T_READ=$1
  if [ ! -r "$1" ]; then
    trust_privilege "$1"
    trust_run "$T_PRIV" cat "$1" >"$2"
    T_READ=$2
  fi
}

# trust_exists PATH: something is at PATH (a file, a directory, or a link, even a dangling one).
trust_exists() {
  [ -e "$1" ] || [ -L "$1" ]
}

# trust_holds PATH OURS: PATH is a plain file (not a link) holding exactly the bytes of OURS.
trust_holds() {
  if [ -L "$1" ] || [ ! -f "$1" ]; then
    return 1
  fi
  trust_read "$1" "$T_TMP/holds"
  cmp -s "$2" "$T_READ"
}

# trust_ours DIR NAME: DIR/NAME is a file this stack wrote, unchanged since: the record the
# install keeps beside it ($T_RECORD: one "NAME CRC SIZE" line per file, POSIX cksum) lists
# NAME with the checksum the file has now. Only such a file is ever replaced or removed.
trust_ours() {
  if [ -L "$1/$T_RECORD" ] || [ ! -f "$1/$T_RECORD" ] || [ -L "$1/$2" ] || [ ! -f "$1/$2" ]; then
    return 1
  fi
  trust_read "$1/$T_RECORD" "$T_TMP/record"
  cp "$T_READ" "$T_TMP/record.now"
  trust_read "$1/$2" "$T_TMP/ours"
  grep -q -x -F -e "$2 $(cksum <"$T_READ")" "$T_TMP/record.now"
}
#@ if mirror

# trust_merge PRIV ACTION ARGS...: the daemon.json merger's ACTION (through `sudo -n` when
# PRIV is 1: it writes the file itself, under its lock); T_DJ_STATE is the word it ended with.
#@ file-only
# shellcheck disable=SC2034 # T_DJ_STATE is the result, read by the script that includes this
#@ end
trust_merge() {
  T_MERGE_PRIV=$1
  shift
  trust_try "$T_MERGE_PRIV" "$T_PY" "$T_TMP/daemon.py" 'registry-mirror:configureDockerMirror' "$@" \
    >"$T_TMP/daemon.state"
  if [ "$T_RC" != 0 ]; then
    T_LINE=$(trust_first "$T_TMP/err" "$T_RC")
    case $T_LINE in
      "registry-mirror: "*)
        trust_die "${T_LINE#registry-mirror: }"
        ;;
      *)
        trust_die "$T_CMD failed: $T_LINE"
        ;;
    esac
  fi
  cat "$T_TMP/err" >&2
  T_DJ_STATE=$(cat "$T_TMP/daemon.state")
}
#@ end
