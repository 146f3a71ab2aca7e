"""Quiet previews: re-evaluation is byte-stable and a config change touches only its resources."""

from __future__ import annotations

import json

from rehearsal.fakes.program import Evaluation, evaluate

BASE = {"hostname": "mirror.test", "dockerCertsDir": "/tmp/certs.d"}


def wire_inputs(ev: Evaluation) -> dict[str, str]:
    """Every resource's inputs exactly as sent, secret markers included, as canonical JSON."""
    return {r.urn: json.dumps(r.raw_inputs, sort_keys=True) for r in ev.resources}


def changed(a: Evaluation, b: Evaluation) -> set[str]:
    wa, wb = wire_inputs(a), wire_inputs(b)
    assert wa.keys() == wb.keys()
    return {a.by_urn(urn).name for urn in wa if wa[urn] != wb[urn]}


def test_the_same_config_twice_registers_byte_identical_inputs():
    first = evaluate(BASE)
    second = evaluate(BASE)
    assert wire_inputs(first) == wire_inputs(second)
    assert first.outputs == second.outputs


def test_changing_proxy_ttl_touches_the_registry_container_alone():
    before = evaluate(BASE)
    after = evaluate(BASE | {"proxyTtl": "24h"})
    assert changed(before, after) == {"registry"}


def test_changing_the_hostname_touches_the_server_certificate_chain_and_trust_only():
    before = evaluate(BASE)
    after = evaluate(BASE | {"hostname": "other.test"})
    touched = changed(before, after)
    assert {"server-csr", "server-cert", "registry", "install-ca"} <= touched
    assert not touched & {"root-ca", "root-ca-key", "intermediate-ca", "intermediate-ca-key",
                          "registry-data", "network", "registry-image"}
