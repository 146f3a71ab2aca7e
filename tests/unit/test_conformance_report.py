"""rehearsal/conformance.py: the suite's printed report read back, and the read-only data a
registry's storage holds. The suite itself runs in tests/rehearsal/test_conformance.py."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rehearsal.conformance import parse_report, read_only_data

# the shape of the suite's `Report` (its run.go and results.go `ReportWalkErr`)
REPORT = """Test results
OCI Conformance Test: FAIL
  OCI Conformance Test/ping: Pass
  OCI Conformance Test/read-only: FAIL
    OCI Conformance Test/read-only/pull: FAIL
      OCI Conformance Test/read-only/pull/blob-get: Pass
      OCI Conformance Test/read-only/pull/blob-get: FAIL
       - Docker-Content-Digest header value expected "sha512:ab", received "sha256:cd"
      OCI Conformance Test/read-only/pull/blob-get: Pass
    OCI Conformance Test/read-only/tag-list: FAIL
     - missing tag "a" from listing
missing tag "b" from listing
    OCI Conformance Test/read-only/push: Disabled
      OCI Conformance Test/read-only/push/manifest-by-tag: Disabled

Configuration:
  registry: 127.0.0.1:5000
  apis:
    ping: true

OCI Conformance Result: FAIL
  Pass..........................:          3

API conformance:
  Tag listing...................:       FAIL
  Blob get......................:       FAIL
  Ping..........................:       Pass

Data conformance:
  Read Only Inputs..............:       FAIL

"""


def test_the_report_gives_each_leaf_its_worst_status_its_errors_and_the_verdicts():
    result = parse_report(1, REPORT, "")
    assert {name: case.status for name, case in result.cases.items()} == {
        "OCI Conformance Test/ping": "passed",
        "OCI Conformance Test/read-only/pull/blob-get": "failure",
        "OCI Conformance Test/read-only/tag-list": "failure",
        "OCI Conformance Test/read-only/push/manifest-by-tag": "skipped",
    }
    assert result.cases["OCI Conformance Test/read-only/tag-list"].error == (
        'missing tag "a" from listing\nmissing tag "b" from listing')
    assert result.count("OCI Conformance Test/read-only/pull/blob-get", "Pass") == 2
    assert result.count("OCI Conformance Test/read-only/pull/blob-get", "FAIL") == 1
    assert sorted(result.failed) == ["OCI Conformance Test/read-only/pull/blob-get",
                                     "OCI Conformance Test/read-only/tag-list"]
    assert result.apis == {"Tag listing": "FAIL", "Blob get": "FAIL", "Ping": "Pass"}
    assert result.data == {"Read Only Inputs": "FAIL"}


def _blob(storage: Path, data: bytes) -> str:
    hexdigest = hashlib.sha256(data).hexdigest()
    path = storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return hexdigest


def test_read_only_data_is_every_tag_manifest_blob_and_subject_the_storage_holds(tmp_path: Path):
    repo = tmp_path / "docker/registry/v2/repositories/team/app"
    config, layer = _blob(tmp_path, b"{}"), _blob(tmp_path, b"layer")
    image = _blob(tmp_path, json.dumps({"config": {"digest": f"sha256:{config}"}}).encode())
    referrer = _blob(tmp_path, json.dumps({"subject": {"digest": f"sha256:{image}"}}).encode())
    for digest in (image, referrer):
        (repo / "_manifests/revisions/sha256" / digest).mkdir(parents=True)
    for digest in (config, layer):
        (repo / "_layers/sha256" / digest).mkdir(parents=True)
    (repo / "_manifests/tags/v1").mkdir(parents=True)
    data = read_only_data(tmp_path, "team/app")
    assert data.tags == ("v1",)
    assert set(data.manifests) == {f"sha256:{image}", f"sha256:{referrer}"}
    assert set(data.blobs) == {f"sha256:{config}", f"sha256:{layer}"}
    assert data.referrers == (f"sha256:{image}",)
    assert data.settings()["OCI_RO_DATA_TAGS"] == "v1"
