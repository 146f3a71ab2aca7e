"""Host trust scripts: the POSIX sh `create`/`delete` commands of the trust `Command`.

`install.sh` (the `create` command) reads the root CA PEM from **stdin** (the CA never appears
in the command text, which Pulumi stores in its state and shows in previews) and

* writes it to Docker's fixed layout `<dockerCertsDir>/<host>:<port>/ca.crt` (mode 0644);
* optionally adds it to the OS trust store: Debian/Ubuntu `update-ca-certificates`, macOS
  `security add-trusted-cert` into the System keychain; any other OS fails with one line;
* optionally merges `"registry-mirrors": [<mirror_url>]` into Docker's `daemon.json`
  (`daemon_json.py`), keeping every other key, backing the original up once, never adding a
  duplicate, and printing that Docker must be restarted (it never restarts Docker itself).

`remove.sh` (the `delete` command) never reads stdin and undoes only what the install added.
Both scripts are idempotent; `common.sh` holds the helpers both use. `render.py` turns the
templates into one self-contained script per stack: it runs as `/bin/sh -c <text>`, locally
or over ssh.

Privileges: a target this user cannot write (for a path still to be created: its nearest
existing parent directory) is written through `sudo -n` when `use_sudo` is true. `-n` never
prompts (a password prompt would hang `pulumi up`); when it fails, or `use_sudo` is false,
the script stops before changing anything, with ONE line on stderr that names the path and
the command to run. The plan (what changes, which privileges) is made before the first
change, so a refusal leaves the host untouched.

Facts relied on (sources):

* Docker reads a registry's CA from `/etc/docker/certs.d/<host>:<port>/ca.crt`
  (`~/.docker/certs.d/...` on Docker Desktop); `registry-mirrors` lives in `daemon.json`.
  dockerd treats a whitespace-only `daemon.json` as an empty configuration and rejects
  unknown keys, so no marker can be stored inside the file: moby/moby
  `daemon/config/config.go` (`getConflictFreeConfiguration`, `findConfigurationConflicts`)
  at 00285a557b6396f8632a244553fca15c753738c5.
* Debian's `update-ca-certificates` (ca-certificates 20230311+deb12u1,
  /usr/sbin/update-ca-certificates): see the note on `--fresh` in `remove.sh`.
* macOS `security` (apple-open-source/macos `Security/SecurityTool/macOS/`
  `trusted_cert_add.c`, `keychain_delete.c`, `keychain_find.c` at
  7e39a483e376a142b570f66216c85c274f74b486): `add-trusted-cert -k` tolerates a certificate
  already in the keychain; `delete-certificate -c <name>` deletes nothing when the name
  matches more than one certificate, `-Z <sha1>` names exactly one; `-t` run as root also
  removes the admin-domain trust settings.
"""
