"""The secret walk: over the combinations of the features that add a secret (every pair of
them in each on/off state, all off and all on), no secret value is readable anywhere Pulumi
keeps it in clear.

Features that add a secret: several mirrors (the router, holding the server key), per-mirror
credentials, Docker Hub credentials, `registryUsers` (an htpasswd file on every registry),
`requireClientCert` (the client key in the router, the blackbox exporter and the trust
command's stdin), the private registry and the Grafana password. Each combination runs the
program under mocks and checks four places (a secret is looked for as it is and as JSON
escapes it: a PEM's newlines):

- inputs: every resource's inputs as the SDK sends them, secret markers removed;
- outputs: what the engine stores as each resource's outputs. It carries secretness over from
  an input only when the whole top-level input is secret (pulumi/pulumi step_executor.go), or
  when the field is in `additionalSecretOutputs`, or when the provider declares the output
  secret; so a field with a secret inside it must be declared;
- the stack outputs that are not secret;
- the specs (configs.spec.ServiceSpec): an upload or env whose value is a secret must be
  declared so (`Upload(secret=True)`, `Secret(...)`), since the declaration is what makes the
  container's field a secret output; a value that happens to be secret today through where it
  came from is not enough.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pulumi
import pytest
from pulumi.runtime import rpc
from pulumi.runtime.sync_await import _sync_await

import components.container
import components.mirror
import components.monitoring
import components.router
import configs.registry
from configs.spec import Secret, ServiceSpec
from rehearsal.fakes.program import Evaluation, evaluate, unwrap

BASE = {
    "hostname": "mirror.test",
    # credentials on an open port need client authentication; every combination is loopback
    "registryBindAddress": "127.0.0.1",
    "dockerCertsDir": "/nonexistent/certs.d",
}
USERS = {"walk-alice": "alice-password-7d1e", "walk-bob": "bob-password-88c2f"}
HUB_PASSWORD = "hub-token-walk-51a0"
MIRROR_PASSWORD = "ghcr-token-walk-c3b9"
GRAFANA_PASSWORD = "grafana-walk-9f0e2a"
# provider-declared secret outputs (pulumi-tls private keys, pulumi-random results)
PROVIDER_SECRETS = {"privateKeyPem", "privateKeyOpenssh", "privateKeyPemPkcs8", "result", "bcryptHash"}
BCRYPT = re.compile(r"\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}")

UPSTREAMS = ("hub-only", "router", "router-with-mirror-credentials")
FEATURES = ("registryUsers", "requireClientCert", "dockerHubCredentials", "privateRegistry", "grafanaPassword")
Row = tuple[str, frozenset[str]]


def _pairs(row: Row) -> set[tuple[tuple[str, object], tuple[str, object]]]:
    """The (factor, level) pairs one combination holds."""
    upstreams, on = row
    levels: list[tuple[str, object]] = [("upstreams", upstreams), *((f, f in on) for f in FEATURES)]
    return set(itertools.combinations(levels, 2))


def covering_combinations() -> list[Row]:
    """Every feature off, every feature on, then (greedily) combinations until every pair of
    features meets in all four on/off states and every upstream layout meets every feature on
    and off. The full product (96 stacks) costs about two minutes under mocks; a defect that
    needs three features at once to leak is what this gives up."""
    product = [(u, frozenset(f for f, on in zip(FEATURES, s, strict=True) if on))
               for u in UPSTREAMS for s in itertools.product((False, True), repeat=len(FEATURES))]
    chosen = [("hub-only", frozenset()), ("router-with-mirror-credentials", frozenset(FEATURES))]
    wanted = set().union(*map(_pairs, product)) - set().union(*map(_pairs, chosen))
    while wanted:
        best = max(product, key=lambda row: len(_pairs(row) & wanted))
        chosen.append(best)
        wanted -= _pairs(best)
    return chosen


COMBINATIONS = covering_combinations()


def stack_config(upstreams: str, features: frozenset[str]) -> tuple[dict[str, str], dict[str, str]]:
    config = dict(BASE, monitoring="true" if "grafanaPassword" in features else "false")
    secrets: dict[str, str] = {}
    if upstreams != "hub-only":
        ghcr: dict[str, Any] = {"upstream": "ghcr.io", "port": 6001}
        if upstreams == "router-with-mirror-credentials":
            ghcr |= {"username": "walk-ghcr-user", "password": MIRROR_PASSWORD}
        entries = json.dumps([{"upstream": "docker.io"}, ghcr])
        (secrets if "password" in ghcr else config)["mirrors"] = entries
    if "registryUsers" in features:
        secrets["registryUsers"] = json.dumps(USERS)
    if "requireClientCert" in features:
        config["requireClientCert"] = "true"
    if "dockerHubCredentials" in features:
        config["dockerHubUsername"] = "walk-hub-user"
        secrets["dockerHubPassword"] = HUB_PASSWORD
    if "privateRegistry" in features:
        config["privateRegistry"] = "true"
    if "grafanaPassword" in features:
        secrets["grafanaAdminPassword"] = GRAFANA_PASSWORD
    return config, secrets


@pytest.fixture(autouse=True)
def _cheap_bcrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk looks for hashes, not at their cost: bcrypt's lowest keeps it fast."""
    monkeypatch.setattr(configs.registry, "BCRYPT_COST", 4)


@contextmanager
def recorded_specs() -> Iterator[list[ServiceSpec]]:
    """Every ServiceSpec the program hands to `service_container`, wherever it was imported."""
    original = components.container.service_container
    specs: list[ServiceSpec] = []

    def recording(parent: Any, naming: Any, network: Any, spec: ServiceSpec, *args: Any, **kwargs: Any) -> Any:
        specs.append(spec)
        return original(parent, naming, network, spec, *args, **kwargs)

    # every module that imported the function by name (imported above, so none binds the
    # recorder of an earlier walk while it is in place)
    patched = [module for name, module in list(sys.modules.items())
               if name.startswith("components") and getattr(module, "service_container", None) is original]
    assert {components.mirror, components.monitoring, components.router} <= set(patched)
    for module in patched:
        module.service_container = recording  # type: ignore[attr-defined]
    try:
        yield specs
    finally:
        for module in patched:
            module.service_container = original  # type: ignore[attr-defined]


def secret_values(ev: Evaluation, given: dict[str, str]) -> list[str]:
    """The secrets of this stack, found independently of where the program puts them."""
    values = [v for k, v in given.items() if k not in ("registryUsers", "mirrors")]
    if "registryUsers" in given:
        values += list(json.loads(given["registryUsers"]).values())
    if "mirrors" in given:
        values += [e["password"] for e in json.loads(given["mirrors"]) if "password" in e]
    for r in ev.resources:
        values += [str(v) for k, v in r.state.items() if k in PROVIDER_SECRETS and v]
    return values


def _strip(value: Any) -> Any:
    if rpc.is_rpc_secret(value):
        return "[secret]"
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def stored_outputs_in_clear(r: Any) -> dict[str, Any]:
    """The fields of a resource's outputs the engine would store unencrypted."""
    declared = set(r.options["additionalSecretOutputs"])
    if r.typ.startswith(("tls:", "random:")):
        declared |= PROVIDER_SECRETS
    return {k: unwrap(v) for k, v in r.state.items()
            if k not in declared and not rpc.is_rpc_secret(r.raw_inputs.get(k))}


def _forms(secret: str) -> list[str]:
    """How a secret shows in JSON text: as is, or escaped (a PEM's newlines become \\n)."""
    return [secret, json.dumps(secret)[1:-1]]


def leaks(text: str, secrets: list[str]) -> list[str]:
    found = [s[:12] + "..." for s in secrets if any(form in text for form in _forms(s))]
    found += [f"a bcrypt hash {m.group(0)[:12]}..." for m in BCRYPT.finditer(text)]
    return found


def undeclared_secrets(specs: list[ServiceSpec]) -> list[str]:
    """Uploads and envs whose value is a secret Output but which the spec does not declare."""
    def is_secret(value: Any) -> bool:
        return isinstance(value, pulumi.Output) and bool(_sync_await(value.is_secret()))

    found = [f"{s.service} upload {u.path}" for s in specs for u in s.uploads if not u.secret and is_secret(u.content)]
    found += [f"{s.service} env #{i}" for s in specs for i, e in enumerate(s.envs)
              if not isinstance(e, Secret) and is_secret(e)]
    return found


def walk(upstreams: str, features: frozenset[str]) -> tuple[Evaluation, list[str]]:
    """Evaluate one combination; return it and every place a secret is readable."""
    config, secrets = stack_config(upstreams, features)
    with recorded_specs() as specs:
        ev = evaluate(config, stack="walk", secrets=secrets)
        problems = undeclared_secrets(specs)
    values = secret_values(ev, secrets)
    assert len(values) >= 5  # the walk has something to look for: keys, http secret at least
    for r in ev.resources:
        # a field with a secret inside it (not the whole field) reaches the state in clear
        # unless declared: whatever the value, a marker the engine drops is a leak
        nested = {p.split(".")[0].split("[")[0] for p in r.secret_paths() if p not in r.raw_inputs}
        problems += [f"{r.name} outputs: {f} not declared secret" for f in
                     sorted(nested - set(r.options["additionalSecretOutputs"]))]
        problems += [f"{r.name} inputs: {s}" for s in leaks(json.dumps(_strip(r.raw_inputs)), values)]
        problems += [f"{r.name} options: {s}" for s in leaks(json.dumps(r.options), values)]
        problems += [f"{r.name} outputs: {s}" for s in leaks(json.dumps(stored_outputs_in_clear(r)), values)]
    for name, value in ev.outputs.items():
        if name not in ev.secret_outputs:
            problems += [f"stack output {name}: {s}" for s in leaks(json.dumps(value), values)]
    return ev, problems


@pytest.mark.parametrize(("upstreams", "features"), COMBINATIONS,
                         ids=[f"{u}:{'+'.join(sorted(f)) or 'none'}" for u, f in COMBINATIONS])
def test_no_secret_is_readable_in_inputs_outputs_stack_outputs_or_undeclared_in_a_spec(upstreams, features):
    ev, problems = walk(upstreams, features)
    assert problems == []
    # the combination is what it says: each feature put its secret somewhere
    containers = {r.name for r in ev.of_type("docker:index/container:Container")}
    assert ("registry-router" in containers) == (upstreams != "hub-only")
    assert ("registry-private" in containers) == ("privateRegistry" in features)
    assert ("grafana" in containers) == ("grafanaPassword" in features)


def test_with_every_feature_on_each_secret_sits_where_the_walk_looks():
    """The walk is not vacuous: in the stack with everything on, each secret reaches the
    resource that needs it, as a secret (so a missing marker would show above)."""
    ev, problems = walk("router-with-mirror-credentials", frozenset(FEATURES))
    assert problems == []
    router_key = ev.find("tls:index/privateKey:PrivateKey", "server-key").state["privateKeyPem"]
    client_key = ev.find("tls:index/privateKey:PrivateKey", "client-key").state["privateKeyPem"]
    expect = {
        ("registry-router", "uploads"): router_key,
        ("registry", "uploads"): "$2b$04$",  # the htpasswd file (bcrypt cost lowered above)
        ("registry-private", "uploads"): "$2b$04$",
        ("blackbox", "uploads"): client_key,
        ("registry", "envs"): HUB_PASSWORD,
        ("registry-ghcr", "envs"): MIRROR_PASSWORD,
        ("grafana", "envs"): GRAFANA_PASSWORD,
    }
    for (service, field), value in expect.items():
        container = ev.container(service)
        paths = [p for p in container.secret_paths() if p.startswith(field)]
        held = [str(unwrap(_at(container.raw_inputs, p))) for p in paths]
        assert any(value in h for h in held), (service, field)
        assert field in container.options["additionalSecretOutputs"], (service, field)
    stdin = ev.find("command:local:Command", "install-ca")
    assert stdin.secret_paths() == ["stdin"] and client_key in stdin.inputs["stdin"]


def _at(tree: Any, path: str) -> Any:
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        tree = tree[int(part[1:-1])] if part.startswith("[") else tree[part]
    return tree



def test_the_combinations_meet_every_pair_of_features_in_each_state():
    product = [(u, frozenset(f for f, on in zip(FEATURES, s, strict=True) if on))
               for u in UPSTREAMS for s in itertools.product((False, True), repeat=len(FEATURES))]
    assert set().union(*map(_pairs, COMBINATIONS)) == set().union(*map(_pairs, product))
    assert len(COMBINATIONS) <= 12
