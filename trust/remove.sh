#@ file-only
# shellcheck shell=sh
# The `delete` command of host trust, as a template: render.py keeps the #@ if blocks this
# stack's switches ask for, fills the #@ values, puts common.sh in at its #@ include and
# drops every #@ line; the result runs as one self-contained /bin/sh -c text.
#@ end
# registry-mirror: remove host trust for @T_HOST@ (rendered from trust/ by trust/render.py).
# Never reads stdin. Idempotent: what is already gone is fine.
# POSIX sh: run as /bin/sh -c <this text>. Paths are quoted: they may contain spaces.
set -eu
umask 022

#@ values
T_CA_DIR=
T_CA_FILE=
#@ if client
T_CLIENT_CERT=
T_CLIENT_KEY=
#@ end
#@ if system
T_SYS_CA_FILE=
T_KEYCHAIN=
#@ end
#@ if mirror
T_MIRROR_URL=
T_DAEMON_JSON=
T_DAEMON_BAK=
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
T_CA_REMOVE=0
T_CA_PRIV=0
if [ -e "$T_CA_FILE" ]; then
  trust_privilege "$T_CA_FILE"
  T_CA_PRIV=$T_PRIV
  T_CA_REMOVE=1
fi
#@ if client
T_CLIENT_REMOVE=0
T_CLIENT_PRIV=0
for T_F in "$T_CLIENT_CERT" "$T_CLIENT_KEY"; do
  if [ -e "$T_F" ]; then
    T_CLIENT_REMOVE=1
    trust_privilege "$T_F"
    if [ "$T_PRIV" = 1 ]; then
      T_CLIENT_PRIV=1
    fi
  fi
done
#@ end
# The <host>:<port> directory goes too when nothing but our files is in it.
T_DIR_REMOVE=0
T_DIR_PRIV=0
if [ -d "$T_CA_DIR" ]; then
#@ if client
  T_LEFT=$( (ls -A "$T_CA_DIR" 2>/dev/null || echo '?') | grep -v -x -e ca.crt -e client.cert -e client.key || true)
#@ else
  T_LEFT=$( (ls -A "$T_CA_DIR" 2>/dev/null || echo '?') | grep -v -x -e ca.crt || true)
#@ end
  if [ -z "$T_LEFT" ]; then
    trust_privilege "$T_CA_DIR"
    T_DIR_PRIV=$T_PRIV
    T_DIR_REMOVE=1
  fi
fi

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
if [ "$T_CA_REMOVE" = 1 ]; then
  trust_run "$T_CA_PRIV" rm -f "$T_CA_FILE"
  trust_say "removed $T_CA_FILE"
fi
#@ if client
if [ "$T_CLIENT_REMOVE" = 1 ]; then
  trust_run "$T_CLIENT_PRIV" rm -f "$T_CLIENT_CERT" "$T_CLIENT_KEY"
  trust_say "removed $T_CLIENT_CERT and $T_CLIENT_KEY"
fi
#@ end
if [ "$T_DIR_REMOVE" = 1 ]; then
  trust_run "$T_DIR_PRIV" rmdir "$T_CA_DIR"
fi
