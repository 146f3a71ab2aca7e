#@ file-only
# shellcheck shell=sh
# The `delete` command of host trust, as a template: render.py keeps the #@ if blocks this
# stack's switches ask for, fills the #@ values, puts common.sh in at its #@ include and
# drops every #@ line; the result runs as one self-contained /bin/sh -c text.
#@ end
# registry-mirror: remove host trust for @T_HOST@ (rendered from trust/ by trust/render.py).
# Never reads stdin. Idempotent: what is already gone is fine.
# POSIX sh: run as /bin/sh -c <this text>. Paths are quoted: they may contain spaces; no
# pathname expansion (set -f): the space-separated lists hold host names, never patterns.
set -euf
umask 022

#@ values
T_CERTS_DIR=
T_HOSTS=
T_KEEP=
T_RECORD=
#@ if system
T_CA_FILE=
T_SYS_CA_FILE=
T_KEYCHAIN=
#@ end
#@ if mirror
T_MIRROR_URL=
T_DAEMON_JSON=
T_DAEMON_BAK=
#@ end
#@ if containerd
T_CTRD_DIR=
T_CTRD_HOSTS=
T_CTRD_MARK=
#@ end
#@ end

#@ include common.sh

#@ if mirror
cat >"$T_TMP/daemon.py" <<'TRUST_PY'
#@ program
TRUST_PY

#@ end
# ---- plan: decide every change and privilege before the first change

#@ if system
# Why --fresh: Debian's update-ca-certificates rebuilds ca-certificates.crt on every run, but
# deletes dangling links in /etc/ssl/certs (and runs `openssl rehash`) only when a certificate
# was added, or removed through a "!" line of ca-certificates.conf. Deleting our .crt alone
# adds and removes nothing, so a plain run leaves <instance>.pem and its hash link dangling;
# --fresh clears the links into the ca-certificates dirs, drops dangling ones and rehashes.
T_SYS_REMOVE=0
T_SYS_PRIV=0
T_OS=$(uname -s)
case $T_OS in
  Linux)
    if [ -e "$T_SYS_CA_FILE" ]; then
      T_UCC=$(command -v update-ca-certificates || true)
      if [ -z "$T_UCC" ] && [ -x /usr/sbin/update-ca-certificates ]; then
        T_UCC=/usr/sbin/update-ca-certificates
      fi
      if [ -z "$T_UCC" ]; then
        trust_die "update-ca-certificates not found: cannot take $T_SYS_CA_FILE out of the \
system trust store; delete it and refresh the store by hand"
      fi
      trust_privilege "$T_SYS_CA_FILE"
      T_SYS_PRIV=$T_PRIV
      T_SYS_REMOVE=1
    fi
    ;;
  Darwin)
    # Found by SHA-1, not by common name (`-c`): a renewed CA keeps its name, and
    # `delete-certificate -c` deletes nothing when the name matches more than one
    # certificate. The hash comes from our ca.crt, which is still in place.
    if [ -f "$T_CA_FILE" ]; then
      T_SHA1=$(openssl x509 -noout -fingerprint -sha1 -in "$T_CA_FILE" 2>/dev/null \
        | sed -e 's/^.*=//' -e 's/://g')
      if [ -z "$T_SHA1" ]; then
        trust_die "cannot read the SHA-1 fingerprint of $T_CA_FILE with openssl"
      fi
      trust_privilege "$T_KEYCHAIN"
      T_SYS_PRIV=$T_PRIV
      T_SYS_REMOVE=1
    else
      trust_say "$T_CA_FILE is gone, so the root CA cannot be identified in $T_KEYCHAIN; \
delete it in Keychain Access if it is still there"
    fi
    ;;
  *)
    # The install refuses other systems: nothing of ours to undo.
    ;;
esac

#@ end
#@ if mirror
# daemon.json: only a backup of ours means we changed the file; take out only what we added.
# Planned as the invoking user on copies it can read; the merger then does it under its lock.
T_DJ_STATE=none
T_DJ_PRIV=0
if [ -e "$T_DAEMON_BAK" ]; then
  T_PY=$(command -v python3 || true)
  if [ -z "$T_PY" ]; then
    trust_die "taking $T_MIRROR_URL out of $T_DAEMON_JSON needs python3 on PATH; install it, or restore $T_DAEMON_BAK by hand"
  fi
  T_DJ_CURRENT=
  if [ -e "$T_DAEMON_JSON" ]; then
    trust_read "$T_DAEMON_JSON" "$T_TMP/daemon.current"
    T_DJ_CURRENT=$T_READ
  fi
  trust_read "$T_DAEMON_BAK" "$T_TMP/daemon.backup"
  "$T_PY" "$T_TMP/daemon.py" 'registry-mirror:configureDockerMirror' plan-remove "$T_MIRROR_URL" \
    "$T_DAEMON_JSON" "$T_DAEMON_BAK" "$T_DJ_CURRENT" "$T_READ" >"$T_TMP/daemon.plan"
  T_DJ_STATE=$(sed -n 1p "$T_TMP/daemon.plan")
  T_DJ_BLOCKER=$(sed -n 2p "$T_TMP/daemon.plan")
  if [ -n "$T_DJ_BLOCKER" ]; then
    trust_privilege "$T_DJ_BLOCKER"
    T_DJ_PRIV=$T_PRIV
  fi
fi

#@ end
#@ if containerd
# containerd: only the upstream directories whose hosts.toml carries this stack's mark; a file
# the install moved aside (<file>$T_KEEP) comes back.
#@ if client
T_CTRD_FILES='hosts.toml ca.crt client.crt client.key'
#@ else
T_CTRD_FILES='hosts.toml ca.crt'
#@ end
T_CTRD_REMOVE=
T_CTRD_PRIV=0
for T_H in $T_CTRD_HOSTS; do
  T_F="$T_CTRD_DIR/$T_H/hosts.toml"
  if [ -f "$T_F" ] && [ ! -L "$T_F" ] && [ "$(sed -n 1p "$T_F" 2>/dev/null)" = "$T_CTRD_MARK" ]; then
    T_CTRD_REMOVE="$T_CTRD_REMOVE $T_H"
    trust_privilege "$T_F"
    if [ "$T_PRIV" = 1 ]; then
      T_CTRD_PRIV=1
    fi
  fi
done

#@ end
# Docker's certs.d, for every TLS port the stack publishes: only a file the record lists,
# unchanged since the install, is ours (trust_ours). Ours goes, or, when the install moved a
# file aside (<file>$T_KEEP), that file comes back in its place byte for byte (a rename). A
# file changed since the install is left as it is, and so is its kept copy.
#@ if client
T_FILES='ca.crt client.cert client.key'
#@ else
T_FILES=ca.crt
#@ end
: >"$T_TMP/docker.plan"
for T_H in $T_HOSTS; do
  T_D="$T_CERTS_DIR/$T_H"
  T_ANY=0
  for T_N in $T_FILES; do
    T_F="$T_D/$T_N"
    if trust_ours "$T_D" "$T_N"; then
      T_ANY=1
      trust_privilege "$T_F"
      if trust_exists "$T_F$T_KEEP"; then
        printf '%s restore %s %s\n' "$T_PRIV" "$T_N" "$T_H" >>"$T_TMP/docker.plan"
      else
        printf '%s delete %s %s\n' "$T_PRIV" "$T_N" "$T_H" >>"$T_TMP/docker.plan"
      fi
    elif trust_exists "$T_F$T_KEEP"; then
      printf '0 changed %s %s\n' "$T_N" "$T_H" >>"$T_TMP/docker.plan"
    fi
  done
  if trust_exists "$T_D/$T_RECORD"; then
    T_ANY=1
    trust_privilege "$T_D/$T_RECORD"
    printf '%s unrecord - %s\n' "$T_PRIV" "$T_H" >>"$T_TMP/docker.plan"
  fi
  # the <host>:<port> directory goes too when nothing is left in it
  if [ "$T_ANY" = 1 ]; then
    trust_privilege "$T_D"
    printf '%s rmdir - %s\n' "$T_PRIV" "$T_H" >>"$T_TMP/docker.plan"
  fi
done

# ---- apply

#@ if system
if [ "$T_SYS_REMOVE" = 1 ]; then
  if [ "$T_OS" = Linux ]; then
    trust_run "$T_SYS_PRIV" rm -f "$T_SYS_CA_FILE"
    trust_run "$T_SYS_PRIV" "$T_UCC" --fresh
    trust_say "removed the root CA from the system trust store ($T_SYS_CA_FILE)"
  else
    # -t as root also removes the admin-domain trust settings that add-trusted-cert -d made.
    trust_try "$T_SYS_PRIV" security delete-certificate -t -Z "$T_SHA1" "$T_KEYCHAIN"
    if [ "$T_RC" = 0 ]; then
      trust_say "removed the root CA ($T_SHA1) from $T_KEYCHAIN"
    elif grep -q 'Unable to delete certificate matching' "$T_TMP/err"; then
      trust_say "the root CA ($T_SHA1) is not in $T_KEYCHAIN"
    else
      trust_die "$T_CMD failed: $(trust_first "$T_TMP/err" "$T_RC")"
    fi
  fi
fi

#@ end
#@ if mirror
if [ "$T_DJ_STATE" != none ]; then
  trust_merge "$T_DJ_PRIV" remove "$T_MIRROR_URL" "$T_DAEMON_JSON" "$T_DAEMON_BAK"
fi
case $T_DJ_STATE in
  changed | restore | delete)
    trust_say "took $T_MIRROR_URL out of $T_DAEMON_JSON and deleted $T_DAEMON_BAK; Docker must \
be restarted to stop using it: sudo systemctl restart docker (Docker Desktop: restart it from its menu)"
    ;;
  unchanged | gone)
    trust_say "deleted $T_DAEMON_BAK ($T_DAEMON_JSON needs no change)"
    ;;
  *)
    ;;
esac

#@ end
#@ if containerd
for T_H in $T_CTRD_REMOVE; do
  T_D="$T_CTRD_DIR/$T_H"
  for T_N in $T_CTRD_FILES; do
    if trust_exists "$T_D/$T_N$T_KEEP"; then
      trust_run "$T_CTRD_PRIV" mv -f "$T_D/$T_N$T_KEEP" "$T_D/$T_N"
      trust_say "put back the $T_D/$T_N that was there before the install"
    else
      trust_run "$T_CTRD_PRIV" rm -f "$T_D/$T_N"
    fi
  done
  if [ -z "$(ls -A "$T_D" 2>/dev/null)" ]; then
    trust_run "$T_CTRD_PRIV" rmdir "$T_D"
  fi
  trust_say "removed $T_D/hosts.toml and the files beside it"
done
#@ end
exec 3<"$T_TMP/docker.plan"
while read -r T_P T_DO T_N T_H <&3; do
  T_D="$T_CERTS_DIR/$T_H"
  T_F="$T_D/$T_N"
  case $T_DO in
    restore)
      trust_run "$T_P" mv -f "$T_F$T_KEEP" "$T_F"
      trust_say "put back the $T_F that was there before the install"
      ;;
    delete)
      trust_run "$T_P" rm -f "$T_F"
      trust_say "removed $T_F"
      ;;
    changed)
      trust_say "left $T_F as it is (it changed since the install); what was there before is in $T_F$T_KEEP"
      ;;
    unrecord)
      trust_run "$T_P" rm -f "$T_D/$T_RECORD"
      ;;
    *)
      if [ -z "$(ls -A "$T_D" 2>/dev/null)" ]; then
        trust_run "$T_P" rmdir "$T_D"
      fi
      ;;
  esac
done
exec 3<&-
