"""Two developer stacks on one Docker host never collide.

Pulumi's mocks are process-global, so each stack is evaluated in its own process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cryptography import x509

ROOT = Path(__file__).resolve().parents[2]

SUMMARY = r"""
import json, sys
from rehearsal.fakes.program import evaluate
config = json.loads(sys.argv[1])
ev = evaluate(config, stack=sys.argv[2])
containers = ev.of_type("docker:index/container:Container")
print(json.dumps({
    "containers": sorted(c.inputs["name"] for c in containers),
    "volumes": sorted(v.inputs["name"] for v in ev.of_type("docker:index/volume:Volume")),
    "networks": sorted(n.inputs["name"] for n in ev.of_type("docker:index/network:Network")),
    "ports": sorted(p["external"] for c in containers for p in c.inputs.get("ports", [])),
    "labels": sorted({l["value"] for c in containers for l in c.inputs["labels"]
                      if l["label"] == "registry-mirror.stack"}),
    "trust_script": ev.find("command:local:Command", "install-ca").inputs["create"],
    "ca_path": ev.outputs["dockerCaPath"],
    "chain": ev.uploads("registry")["/etc/distribution/certs/registry.crt"],
    "urls": ev.outputs["urls"],
}))
"""


def evaluate_in_own_process(stack: str, config: dict[str, str]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", SUMMARY, json.dumps(config | {"configureDockerMirror": "true"}), stack],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_alice_and_bob_share_no_name_port_or_path_and_each_cert_has_its_own_hostname():
    alice = evaluate_in_own_process("alice", {"hostname": "alice.lan"})
    bob = evaluate_in_own_process("bob", {"hostname": "bob.lan", "portOffset": "1000"})

    for key in ("containers", "volumes", "networks", "ports"):
        assert alice[key] and bob[key]
        assert not set(alice[key]) & set(bob[key]), key
    assert alice["labels"] == ["alice"] and bob["labels"] == ["bob"]
    assert all(n.startswith("registry-mirror-alice-") for n in alice["containers"] + alice["volumes"])
    assert all(n.startswith("registry-mirror-bob-") for n in bob["containers"] + bob["volumes"])
    assert alice["ports"] == sorted([6000, 3000, 9090, 16686, 3100, 12345])
    assert bob["ports"] == sorted(p + 1000 for p in alice["ports"])

    # trust: keyed by host:port, backups by project + stack
    assert alice["ca_path"] == "/etc/docker/certs.d/alice.lan:6000/ca.crt"
    assert bob["ca_path"] == "/etc/docker/certs.d/bob.lan:7000/ca.crt"
    assert "daemon.json.registry-mirror-alice.bak" in alice["trust_script"]
    assert "daemon.json.registry-mirror-bob.bak" in bob["trust_script"]
    assert "registry-mirror-bob" not in alice["trust_script"]

    for who, summary in (("alice.lan", alice), ("bob.lan", bob)):
        leaf = x509.load_pem_x509_certificates(summary["chain"].encode())[0]
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert who in sans.get_values_for_type(x509.DNSName)
        other = "bob.lan" if who == "alice.lan" else "alice.lan"
        assert other not in sans.get_values_for_type(x509.DNSName)
    assert bob["urls"]["grafana"] == "http://localhost:4000"
