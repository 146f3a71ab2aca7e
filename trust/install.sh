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
T_SYS_CA_DIR=
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
T_CTRD_SERVERS=
T_CTRD_MIRROR=
T_CTRD_MARK=
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

# Docker's fixed layout, for every TLS port the stack publishes: <certs.d>/<host>:<port>/ holds
# ca.crt (and client.cert, client.key), and $T_RECORD lists the files this stack wrote there.
# A file of ours is replaced when it changes; a file that already holds our bytes is left
# alone (and left on remove). Any other file in the place of ours was not written by this
# stack: it is moved aside to <file>$T_KEEP, and remove puts it back byte for byte. Docker
# reads only *.crt, *.cert and *.key in that directory (moby registry.loadTLSConfig), so
# neither the kept copy nor the record is ever read by Docker.
#@ if client
T_FILES='ca.crt client.cert client.key'
#@ else
T_FILES=ca.crt
#@ end
: >"$T_TMP/docker.plan"
: >"$T_TMP/docker.same"
T_I=0
for T_H in $T_HOSTS; do
  T_I=$((T_I + 1))
  T_D="$T_CERTS_DIR/$T_H"
  T_CHANGE=0
  : >"$T_TMP/record.$T_I"
  for T_N in $T_FILES; do
    T_F="$T_D/$T_N"
    T_DO='write'
    if trust_ours "$T_D" "$T_N"; then
      if trust_holds "$T_F" "$T_TMP/$T_N"; then
        T_DO=keep
      fi
    elif trust_holds "$T_F" "$T_TMP/$T_N"; then
      continue
    elif trust_exists "$T_F"; then
      if trust_exists "$T_F$T_KEEP"; then
        trust_die "$T_F and $T_F$T_KEEP are both there and this stack wrote neither: move one of them away"
      fi
      T_DO=aside
    fi
    printf '%s %s\n' "$T_N" "$(cksum <"$T_TMP/$T_N")" >>"$T_TMP/record.$T_I"
    if [ "$T_DO" != keep ]; then
      T_CHANGE=1
      trust_privilege "$T_F"
      printf '%s %s %s %s\n' "$T_PRIV" "$T_DO" "$T_N" "$T_H" >>"$T_TMP/docker.plan"
    fi
  done
  if [ "$T_CHANGE" = 1 ]; then
    trust_privilege "$T_D/$T_RECORD"
    printf '%s record %s %s\n' "$T_PRIV" "$T_I" "$T_H" >>"$T_TMP/docker.plan"
  else
    printf '%s\n' "$T_H" >>"$T_TMP/docker.same"
  fi
done

#@ if containerd
# containerd: one certs.d/<upstream>/hosts.toml per upstream, the CA (and client pair) beside
# it. The file's first line marks it as this stack's: any other hosts.toml stops the install,
# and only a marked one is ever replaced or removed. Beside a marked hosts.toml every file is
# ours; beside none, a ca.crt or client.* already there is moved aside to <file>$T_KEEP, as in
# Docker's certs.d, and remove puts it back. The TOML is what configs/clients.py's serializer
# writes (a test compares them byte for byte); every value in it was checked by render.py to
# hold no quote, backslash or space.
#@ if client
T_CTRD_FILES='ca.crt client.crt client.key'
#@ else
T_CTRD_FILES=ca.crt
#@ end
T_CTRD_PRIV=0
: >"$T_TMP/containerd.aside"
for T_H in $T_CTRD_HOSTS; do
  T_F="$T_CTRD_DIR/$T_H/hosts.toml"
  T_MARKED=0
  if trust_exists "$T_F"; then
    if [ ! -L "$T_F" ] && [ "$(sed -n 1p "$T_F" 2>/dev/null)" = "$T_CTRD_MARK" ]; then
      T_MARKED=1
    else
      trust_die "$T_F exists and was not written by this stack: move it away, or run: pulumi config set registry-mirror:installContainerdConfig false"
    fi
  fi
  trust_privilege "$T_F"
  if [ "$T_PRIV" = 1 ]; then
    T_CTRD_PRIV=1
  fi
  if [ "$T_MARKED" = 0 ]; then
    for T_N in $T_CTRD_FILES; do
      T_F="$T_CTRD_DIR/$T_H/$T_N"
      if trust_exists "$T_F" && ! trust_exists "$T_F$T_KEEP"; then
        printf '%s\n' "$T_F" >>"$T_TMP/containerd.aside"
      fi
    done
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

exec 3<"$T_TMP/docker.plan"
while read -r T_P T_DO T_N T_H <&3; do
  T_F="$T_CERTS_DIR/$T_H/$T_N"
  trust_run "$T_P" mkdir -p "$T_CERTS_DIR/$T_H"
  case $T_DO in
    record)
      # 0600: it holds a checksum of the client key
      trust_run "$T_P" install -m 0600 "$T_TMP/record.$T_N" "$T_CERTS_DIR/$T_H/$T_RECORD"
      continue
      ;;
    aside)
      trust_run "$T_P" mv -f "$T_F" "$T_F$T_KEEP"
      trust_say "moved the $T_F this stack did not write to $T_F$T_KEEP; pulumi destroy puts it back"
      ;;
    *)
      ;;
  esac
  case $T_N in
#@ if client
    client.cert)
      trust_run "$T_P" install -m 0644 "$T_TMP/client.cert" "$T_F"
      trust_say "installed the client certificate for $T_H in $T_F"
      ;;
    client.key)
      trust_run "$T_P" install -m 0600 "$T_TMP/client.key" "$T_F"
      trust_say "installed the client key for $T_H in $T_F (mode 0600)"
      ;;
#@ end
    *)
      trust_run "$T_P" install -m 0644 "$T_TMP/ca.crt" "$T_F"
      trust_say "installed the root CA for $T_H in $T_F"
      ;;
  esac
done
exec 3<&-
while read -r T_H; do
#@ if client
  trust_say "$T_CERTS_DIR/$T_H already holds this root CA and client certificate"
#@ else
  trust_say "$T_CERTS_DIR/$T_H already holds this root CA"
#@ end
done <"$T_TMP/docker.same"
#@ if containerd
# shellcheck disable=SC2086 # the lists split on spaces; render.py allows none inside an item
set -- $T_CTRD_SERVERS
for T_H in $T_CTRD_HOSTS; do
  T_D="$T_CTRD_DIR/$T_H"
  {
    printf '%s\nserver = "%s"\n\n[host."%s"]\ncapabilities = [\n    "pull",\n    "resolve",\n]\nca = "%s"\n' \
      "$T_CTRD_MARK" "$1" "$T_CTRD_MIRROR" "$T_D/ca.crt"
#@ if client
    printf 'client = [\n    [\n        "%s",\n        "%s",\n    ],\n]\n' "$T_D/client.crt" "$T_D/client.key"
#@ end
  } >"$T_TMP/hosts.toml"
  shift
  trust_run "$T_CTRD_PRIV" mkdir -p "$T_D"
  for T_N in $T_CTRD_FILES; do
    if grep -q -x -F -e "$T_D/$T_N" "$T_TMP/containerd.aside"; then
      trust_run "$T_CTRD_PRIV" mv -f "$T_D/$T_N" "$T_D/$T_N$T_KEEP"
      trust_say "moved the $T_D/$T_N this stack did not write to $T_D/$T_N$T_KEEP; pulumi destroy puts it back"
    fi
  done
  trust_run "$T_CTRD_PRIV" install -m 0644 "$T_TMP/ca.crt" "$T_D/ca.crt"
#@ if client
  trust_run "$T_CTRD_PRIV" install -m 0644 "$T_TMP/client.cert" "$T_D/client.crt"
  trust_run "$T_CTRD_PRIV" install -m 0600 "$T_TMP/client.key" "$T_D/client.key"
#@ end
  trust_run "$T_CTRD_PRIV" install -m 0644 "$T_TMP/hosts.toml" "$T_D/hosts.toml"
  trust_say "installed $T_D/hosts.toml for containerd (CA beside it); the CRI reads it once config_path is set: see the README"
done
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
