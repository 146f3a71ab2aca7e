"""A behaviour snapshot of the whole program: every registered resource keyed by URN (type,
parent, dependencies, inputs, options) and every stack output, for a few named stacks.

Values that differ between evaluations without any change of behaviour are masked: PEM blocks
(the fake PKI makes new keys in every process), the values under Pulumi secret markers (so a
secret stays visible as a secret, never as its value) and the results of random resources.
`python -m tests.snapshot` re-takes the snapshot files; the test in
`tests/unit/test_resource_snapshot.py` compares a fresh evaluation with them.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from pulumi.runtime import rpc

from rehearsal.fakes.program import Evaluation, evaluate

SNAPSHOT_DIR = Path(__file__).resolve().parent / "snapshots"

# name -> (config, secrets, stack): the three stacks the redesign issue names
STACKS: dict[str, tuple[dict[str, str], dict[str, str], str]] = {
    "default": ({}, {}, "dev"),
    "alice": (
        # loopback only: credentials on an open port without client auth fail preview
        {"hostname": "alice.lan", "portOffset": "1000", "dockerHubUsername": "alice",
         "registryBindAddress": "127.0.0.1"},
        {"dockerHubPassword": "alice-hub-token"},
        "alice",
    ),
    "off": (
        {"monitoring": "false", "tracing": "false", "logging": "false", "installTrust": "false"},
        {},
        "off",
    ),
}

_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----\n?", re.S)


def _mask(value: Any, randoms: tuple[str, ...]) -> Any:
    if rpc.is_rpc_secret(value):
        return "[secret]"
    if isinstance(value, dict):
        return {k: _mask(v, randoms) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_mask(v, randoms) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        value = _PEM.sub(lambda m: f"[pem {m.group(1)}]", value)
        for r in randoms:
            value = value.replace(r, "[random]")
    return value


def snapshot(ev: Evaluation) -> dict[str, Any]:
    randoms = tuple(
        str(r.state[k]) for r in ev.resources if r.typ.startswith("random:")
        for k in ("result", "bcryptHash") if r.state.get(k)
    )
    resources = {
        r.urn: {
            "type": r.typ,
            "parent": r.parent,
            "custom": r.custom,
            "dependencies": sorted(r.dependencies),
            "inputs": _mask(r.raw_inputs, randoms),
            "options": _mask(r.options, randoms),
        }
        for r in ev.resources
    }
    outputs = {
        name: ("[secret]" if name in ev.secret_outputs else _mask(value, randoms))
        for name, value in sorted(ev.outputs.items())
    }
    return {"resources": dict(sorted(resources.items())), "outputs": outputs}


def take(name: str) -> dict[str, Any]:
    config, secrets, stack = STACKS[name]
    return json.loads(json.dumps(snapshot(evaluate(config, stack=stack, secrets=secrets)), default=str))


def path(name: str) -> Path:
    return SNAPSHOT_DIR / f"{name}.json"


def main() -> None:
    names = sys.argv[1:] or list(STACKS)
    for name in names:
        path(name).write_text(json.dumps(take(name), indent=1, sort_keys=True) + "\n")
        print(f"wrote {path(name)}")


if __name__ == "__main__":
    main()
