#@ file-only
# shellcheck shell=sh
# The `create` command of host trust, as a template: render.py keeps the #@ if blocks this
# stack's switches ask for, fills the #@ values, puts common.sh in at its #@ include and
# drops every #@ line; the result runs as one self-contained /bin/sh -c text.
# The header below names the renderer these scripts had before they became files. It stays
# until the text changes for another reason: Pulumi replaces the trust command (remove, then
# install) of every stack whose command text changes by a single byte.
#@ end
# registry-mirror: install host trust for @T_HOST@ (rendered by configs/trust.py).
# The root CA PEM is read from stdin; no certificate is in this text.
# POSIX sh: run as /bin/sh -c <this text>. Paths are quoted: they may contain spaces.
set -eu
umask 022

#@ values
T_HOST=
T_CA_DIR=
T_CA_FILE=
#@ if system
T_SYS_CA_DIR=
T_SYS_CA_FILE=
T_KEYCHAIN=
#@ end
#@ if mirror
T_MIRROR_URL=
T_DAEMON_JSON=
T_DAEMON_DIR=
T_DAEMON_BAK=
#@ end
#@ end

#@ include common.sh

# The root CA arrives on stdin and only there. Root CA only: a chain or a key is refused.
cat >"$T_TMP/ca.crt"
T_COUNT=$(grep -c -e '-----BEGIN CERTIFICATE-----' "$T_TMP/ca.crt" || true)
if [ "$T_COUNT" != 1 ] || ! grep -q -e '-----END CERTIFICATE-----' "$T_TMP/ca.crt"; then
  trust_die "expected exactly one PEM certificate (the root CA) on stdin, found $T_COUNT"
fi
if grep -q -e 'PRIVATE KEY' "$T_TMP/ca.crt"; then
  trust_die "stdin holds a private key: only the root CA certificate belongs here"
fi

#@ if system
# System trust: Debian/Ubuntu (update-ca-certificates) or macOS (security); nothing else.
T_OS=$(uname -s)
case $T_OS in
  Linux)
    T_UCC=$(command -v update-ca-certificates || true)
    if [ -z "$T_UCC" ] && [ -x /usr/sbin/update-ca-certificates ]; then
      T_UCC=/usr/sbin/update-ca-certificates
    fi
    if [ -z "$T_UCC" ]; then
      trust_die "system trust on Linux needs update-ca-certificates (Debian/Ubuntu), not found; trust $T_CA_FILE by hand and run: pulumi config set registry-mirror:installSystemTrust false"
    fi
    ;;
  Darwin)
    ;;
  *)
    trust_die "system trust supports Debian/Ubuntu and macOS, not $T_OS; trust $T_CA_FILE by hand and run: pulumi config set registry-mirror:installSystemTrust false"
    ;;
esac

#@ end
#@ if mirror
T_PY=$(command -v python3 || true)
if [ -z "$T_PY" ]; then
  trust_die "editing $T_DAEMON_JSON needs python3 on PATH; install it or run: pulumi config set registry-mirror:configureDockerMirror false"
fi

cat >"$T_TMP/daemon.py" <<'TRUST_PY'
#@ program
TRUST_PY

#@ end
# ---- plan: decide every change and privilege before the first change

# Docker's fixed layout: <certs.d>/<host>:<port>/ca.crt. Unchanged content: nothing to do.
T_CERTS_WRITE=1
T_CERTS_PRIV=0
if [ -f "$T_CA_FILE" ] && cmp -s "$T_TMP/ca.crt" "$T_CA_FILE"; then
  T_CERTS_WRITE=0
else
  trust_privilege "$T_CA_FILE"
  T_CERTS_PRIV=$T_PRIV
fi

#@ if system
# update-ca-certificates also writes /etc/ssl/certs: the CA directory's privilege stands for it.
T_SYS_WRITE=1
T_SYS_PRIV=0
if [ "$T_OS" = Linux ]; then
  if [ -f "$T_SYS_CA_FILE" ] && cmp -s "$T_TMP/ca.crt" "$T_SYS_CA_FILE"; then
    T_SYS_WRITE=0
  else
    trust_privilege "$T_SYS_CA_FILE"
    T_SYS_PRIV=$T_PRIV
  fi
else
  trust_privilege "$T_KEYCHAIN"
  T_SYS_PRIV=$T_PRIV
fi

#@ end
#@ if mirror
# daemon.json: the new content is computed as the invoking user, before any change.
T_DJ_CURRENT=
if [ -e "$T_DAEMON_JSON" ]; then
  trust_read "$T_DAEMON_JSON" "$T_TMP/daemon.current"
  T_DJ_CURRENT=$T_READ
fi
T_DJ_STATE=$("$T_PY" "$T_TMP/daemon.py" 'registry-mirror:configureDockerMirror' install "$T_MIRROR_URL" \
  "$T_DAEMON_JSON" "$T_DJ_CURRENT" "$T_TMP/daemon.new")
T_DJ_PRIV=0
if [ "$T_DJ_STATE" = changed ]; then
  trust_privilege "$T_DAEMON_JSON"
  T_DJ_PRIV=$T_PRIV
fi

#@ end
# ---- apply

if [ "$T_CERTS_WRITE" = 1 ]; then
  trust_run "$T_CERTS_PRIV" mkdir -p "$T_CA_DIR"
  trust_run "$T_CERTS_PRIV" install -m 0644 "$T_TMP/ca.crt" "$T_CA_FILE"
  trust_say "installed the root CA for $T_HOST in $T_CA_FILE"
else
  trust_say "$T_CA_FILE already holds this root CA"
fi
#@ if system

if [ "$T_SYS_WRITE" = 1 ]; then
  if [ "$T_OS" = Linux ]; then
    trust_run "$T_SYS_PRIV" mkdir -p "$T_SYS_CA_DIR"
    trust_run "$T_SYS_PRIV" install -m 0644 "$T_TMP/ca.crt" "$T_SYS_CA_FILE"
    trust_run "$T_SYS_PRIV" "$T_UCC"
    trust_say "added the root CA to the system trust store as $T_SYS_CA_FILE"
  else
    # Root CA only, admin trust domain. Since macOS 11 this asks for an administrator
    # password in a dialog even when run as root (Apple's release notes).
    trust_run "$T_SYS_PRIV" security add-trusted-cert -d -r trustRoot -k "$T_KEYCHAIN" \
      "$T_TMP/ca.crt"
    trust_say "trusted the root CA in $T_KEYCHAIN"
  fi
else
  trust_say "$T_SYS_CA_FILE already holds this root CA"
fi
#@ end
#@ if mirror

if [ "$T_DJ_STATE" = changed ]; then
  trust_run "$T_DJ_PRIV" mkdir -p "$T_DAEMON_DIR"
  if [ ! -e "$T_DAEMON_BAK" ]; then
    # Backed up once, before the first change. An empty backup: there was no daemon.json.
    if [ -e "$T_DAEMON_JSON" ]; then
      trust_run "$T_DJ_PRIV" cp -p "$T_DAEMON_JSON" "$T_DAEMON_BAK"
    else
      : >"$T_TMP/empty"
      trust_run "$T_DJ_PRIV" install -m 0644 "$T_TMP/empty" "$T_DAEMON_BAK"
    fi
  fi
  if [ -e "$T_DAEMON_JSON" ]; then
    trust_run "$T_DJ_PRIV" cp "$T_TMP/daemon.new" "$T_DAEMON_JSON"
  else
    trust_run "$T_DJ_PRIV" install -m 0644 "$T_TMP/daemon.new" "$T_DAEMON_JSON"
  fi
  trust_say "added $T_MIRROR_URL to registry-mirrors in $T_DAEMON_JSON (original kept in \
$T_DAEMON_BAK); Docker must be restarted to use it: sudo systemctl restart docker \
(Docker Desktop: restart it from its menu)"
else
  trust_say "$T_DAEMON_JSON already lists $T_MIRROR_URL in registry-mirrors"
fi
#@ end
