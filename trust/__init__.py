"""Host trust scripts: the POSIX sh `create`/`delete` commands of the trust `Command`.

`install.sh` reads the root CA (and, with client certificates, the client chain and key)
from stdin, never from the command text, which Pulumi stores and shows; `remove.sh` undoes
only what the install added. Both are idempotent and decide every change and privilege
before the first one; `common.sh` holds the helpers both use and `daemon_json.py` edits
Docker's `daemon.json` under a lock shared by every stack. `render.py` turns these templates
into one self-contained script per stack (`render_install_script` tells what the scripts
do). `known_hosts.py` finds the SSH host key to pin when the Docker host is `ssh://`.

Upstream sources: docs/upstream-references.md
"""
