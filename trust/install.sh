#@ file-only
# shellcheck shell=sh
# The `create` command of host trust, as a template: render.py keeps the #@ if blocks this
# stack's switches ask for, fills the #@ values, puts common.sh in at its #@ include and
# drops every #@ line; the result runs as one self-contained /bin/sh -c text.
#@ end
# registry-mirror: install host trust for @T_HOST@ (rendered from trust/ by trust/render.py).
#@ if client
# stdin carries the root CA, the client certificate chain and its key; none is in this text.
#@ else
# The root CA PEM is read from stdin; no certificate is in this text.
#@ end
# POSIX sh: run as /bin/sh -c <this text>. Paths are quoted: they may contain spaces.
set -eu
umask 022

#@ values
T_HOST=
T_CA_DIR=
T_CA_FILE=
#@ if client
T_CLIENT_CERT=
T_CLIENT_KEY=
#@ end
#@ if system
T_SYS_CA_DIR=
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

# What stdin carries, split into its PEM blocks: block 1 is the root CA (ca.crt), a private
# key block goes to client.key and every other certificate to client.cert, in order. Files
# are made 0600 (the key is among them) and stay open: awk would truncate a file it reopens.
# awk reports the layout, never a byte of the blocks; the checks below decide whether it is
# the layout this stack expects.
cat >"$T_TMP/stdin"
T_PEM=$(umask 077 && awk -v dir="$T_TMP" '
  { sub(/\r$/, "") }
  inside {
    print > out
    if ($0 == "-----END " label "-----") { inside = 0 }
    else if ($0 ~ /^-----/) { bad = 1 }
    next
  }
  /^-----BEGIN [A-Z0-9 ]+-----$/ {
    label = substr($0, 12, length($0) - 16)
    blocks++
    if (label == "CERTIFICATE") {
      certs++
      kind = (blocks == 1) ? "ca.crt" : "client.cert"
    } else if (label ~ /^(RSA |EC )?PRIVATE KEY$/) {
      keys++
      kind = "client.key"
    } else {
      others++
      kind = "other"
    }
    if (kind == "client.key") key_at = blocks
    out = dir "/" kind
    inside = 1
    print > out
    next
  }
  /^[ \t]*$/ { next }
  { stray++ }
  END {
    if (inside) bad = 1
    printf "%d %d %d %d %d %d\n", certs, keys, others, stray, bad, (key_at == blocks && keys == 1)
  }' "$T_TMP/stdin")
read -r T_CERTS T_KEYS T_OTHER T_STRAY T_BROKEN T_KEY_LAST <<EOF
$T_PEM
EOF
if [ "$T_OTHER" != 0 ] || [ "$T_STRAY" != 0 ] || [ "$T_BROKEN" != 0 ]; then
  trust_die "stdin is not a sequence of complete PEM blocks (other blocks: $T_OTHER, stray lines: $T_STRAY, unterminated or broken: $T_BROKEN)"
fi
if [ "$T_KEYS" -gt 1 ] || { [ "$T_KEYS" = 1 ] && [ "$T_KEY_LAST" != 1 ]; }; then
  trust_die "stdin holds $T_KEYS private keys, or a key before a certificate: at most one key, last"
fi
#@ if client
# The root CA, the client chain (leaf and intermediate: the registry trusts only the root),
# then the chain's key, last.
if [ "$T_CERTS" -lt 3 ] || [ "$T_KEYS" != 1 ]; then
  trust_die "expected on stdin the root CA, the client certificate chain (leaf, intermediate) and its private key, in that order; found $T_CERTS certificates and $T_KEYS private keys"
fi
#@ else
if [ "$T_KEYS" != 0 ]; then
  trust_die "stdin holds a private key: only the root CA certificate belongs here"
fi
if [ "$T_CERTS" != 1 ]; then
  trust_die "expected exactly one PEM certificate (the root CA) on stdin, found $T_CERTS"
fi
#@ end

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
#@ if client
# Docker's client certificate beside it: client.cert (the chain) and client.key (0600).
T_CLIENT_WRITE=0
T_CLIENT_PRIV=0
for T_F in "$T_CLIENT_CERT" "$T_CLIENT_KEY"; do
  if [ ! -f "$T_F" ] || ! cmp -s "$T_TMP/$(basename "$T_F")" "$T_F"; then
    T_CLIENT_WRITE=1
    trust_privilege "$T_F"
    if [ "$T_PRIV" = 1 ]; then
      T_CLIENT_PRIV=1
    fi
  fi
done
#@ end

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
# daemon.json: planned as the invoking user on copies it can read, before any change; the
# merger then makes the change itself, under its lock (other stacks may edit the same file).
T_DJ_CURRENT=
if [ -e "$T_DAEMON_JSON" ]; then
  trust_read "$T_DAEMON_JSON" "$T_TMP/daemon.current"
  T_DJ_CURRENT=$T_READ
fi
"$T_PY" "$T_TMP/daemon.py" 'registry-mirror:configureDockerMirror' plan-install "$T_MIRROR_URL" \
  "$T_DAEMON_JSON" "$T_DAEMON_BAK" "$T_DJ_CURRENT" >"$T_TMP/daemon.plan"
T_DJ_STATE=$(sed -n 1p "$T_TMP/daemon.plan")
T_DJ_BLOCKER=$(sed -n 2p "$T_TMP/daemon.plan")
T_DJ_PRIV=0
if [ -n "$T_DJ_BLOCKER" ]; then
  trust_privilege "$T_DJ_BLOCKER"
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
#@ if client
if [ "$T_CLIENT_WRITE" = 1 ]; then
  trust_run "$T_CLIENT_PRIV" mkdir -p "$T_CA_DIR"
  trust_run "$T_CLIENT_PRIV" install -m 0644 "$T_TMP/client.cert" "$T_CLIENT_CERT"
  trust_run "$T_CLIENT_PRIV" install -m 0600 "$T_TMP/client.key" "$T_CLIENT_KEY"
  trust_say "installed the client certificate for $T_HOST in $T_CLIENT_CERT and its key in $T_CLIENT_KEY (mode 0600)"
else
  trust_say "$T_CLIENT_CERT and $T_CLIENT_KEY already hold this client certificate"
fi
#@ end
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
  trust_merge "$T_DJ_PRIV" install "$T_MIRROR_URL" "$T_DAEMON_JSON" "$T_DAEMON_BAK"
fi
if [ "$T_DJ_STATE" = changed ]; then
  trust_say "added $T_MIRROR_URL to registry-mirrors in $T_DAEMON_JSON (original kept in \
$T_DAEMON_BAK); Docker must be restarted to use it: sudo systemctl restart docker \
(Docker Desktop: restart it from its menu)"
else
  trust_say "$T_DAEMON_JSON already lists $T_MIRROR_URL in registry-mirrors"
fi
#@ end
