#!/usr/bin/env bash
# The main job: venv + dependencies, a local file state backend with a passphrase, the stack
# `dev` (or $STACK), then `pulumi up`. Extra arguments go to `pulumi up` (e.g. --yes).
# PULUMI_COMMAND=preview|destroy|refresh runs that instead, with the same backend (make
# preview / make down).
#
# The state passphrase comes from PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE;
# without either, a random one is generated once into .pulumi-passphrase (mode 0600,
# git-ignored). Keep that file: without it the stack's secrets cannot be decrypted.
set -euo pipefail
cd "$(dirname "$0")/.."

stack="${STACK:-dev}"
verb="${PULUMI_COMMAND:-up}"
case "$verb" in
  up|preview|destroy|refresh) ;;
  *) echo "registry-mirror: PULUMI_COMMAND must be up, preview, destroy or refresh (got '$verb')" >&2; exit 2 ;;
esac
state_dir="${PULUMI_STATE_DIR:-$PWD/.pulumi-state}"

command -v pulumi >/dev/null 2>&1 || {
  echo "registry-mirror: the Pulumi CLI is not installed: see https://www.pulumi.com/docs/install/" >&2
  exit 1
}
docker info >/dev/null 2>&1 || {
  echo "registry-mirror: cannot reach the Docker daemon (is Docker running, and may you use it?)" >&2
  exit 1
}

if [ ! -x venv/bin/python ] || ! cmp -s requirements.txt venv/.requirements.txt; then
  python3 -m venv venv
  venv/bin/pip install --quiet --upgrade pip
  venv/bin/pip install --quiet -r requirements.txt
  cp requirements.txt venv/.requirements.txt
fi

if [ -z "${PULUMI_CONFIG_PASSPHRASE:-}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  if [ ! -f .pulumi-passphrase ]; then
    (umask 077 && venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))' > .pulumi-passphrase)
    echo "registry-mirror: generated the state passphrase in .pulumi-passphrase (keep it safe)"
  fi
  export PULUMI_CONFIG_PASSPHRASE_FILE="$PWD/.pulumi-passphrase"
fi

mkdir -p "$state_dir"
pulumi login "file://$state_dir"
pulumi stack select "$stack" 2>/dev/null || pulumi stack init "$stack" --secrets-provider passphrase
pulumi "$verb" --stack "$stack" "$@"
