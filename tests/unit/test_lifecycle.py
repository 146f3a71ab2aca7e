"""What the engine and the Docker provider do on replace and destroy, made explicit on every
registered resource (mocks cannot show the effect; the real-engine tests do)."""

from __future__ import annotations

import pytest

from contract import STOP_GRACE_SECONDS
from rehearsal.fakes.program import evaluate

CONTAINER = "docker:index/container:Container"


@pytest.fixture(scope="module")
def ev():
    return evaluate({"hostname": "mirror.test"})


def test_every_container_gets_a_stop_grace_period_instead_of_a_sigkill(ev):
    containers = ev.of_type(CONTAINER)
    assert len(containers) == 8  # 7 services and the upstream front
    assert STOP_GRACE_SECONDS >= 10  # Docker's own default for `docker stop`
    for c in containers:
        assert c.inputs["destroyGraceSeconds"] == STOP_GRACE_SECONDS, c.name
        assert c.inputs["stopTimeout"] == STOP_GRACE_SECONDS, c.name


def test_every_container_sets_swap_equal_to_memory_so_docker_adds_no_swap(ev):
    for c in ev.of_type(CONTAINER):
        assert c.inputs["memorySwap"] == c.inputs["memory"] > 0, c.name


def test_a_healthcheck_change_replaces_the_container(ev):
    for c in ev.of_type(CONTAINER):
        assert "healthcheck" in c.options["replaceOnChanges"], c.name
        assert c.options["deleteBeforeReplace"], c.name


def test_every_fixed_name_resource_is_deleted_before_it_is_replaced(ev):
    named = [r for r in ev.resources if r.custom and "name" in r.inputs
             and r.typ.startswith("docker:index/") and r.typ != "docker:index/remoteImage:RemoteImage"]
    assert {r.typ for r in named} == {CONTAINER, "docker:index/network:Network",
                                      "docker:index/volume:Volume"}
    for r in named:
        assert r.options["deleteBeforeReplace"], (r.typ, r.name)
