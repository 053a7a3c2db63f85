"""kopf's handlers only translate: what `run` was told reaches them through kopf's memo, and a
RollbackVerification event reaches the objects gauge and the runner. The runner on fakes, no cluster."""

from __future__ import annotations

import asyncio

import kopf
from kubernetes import client

from rollback_verifier.controller.handlers import RunOptions, login, verification_event
from tests.unit.fakes import EPOCH
from tests.unit.test_runner import NS, operator, rolled_out, verification


def test_login_uses_the_client_run_was_given_through_the_memo() -> None:
    configuration = client.Configuration(
        host="https://10.0.0.1:6443",
        api_key={"BearerToken": "secret-token"},
        api_key_prefix={"BearerToken": "Bearer"},
    )
    configuration.ssl_ca_cert = "/etc/ca.crt"
    memo = kopf.Memo(options=RunOptions(api_client=client.ApiClient(configuration)))
    info = login(memo=memo)
    assert (info.server, info.scheme, info.token, info.ca_path) == (
        "https://10.0.0.1:6443",
        "Bearer",
        "secret-token",
        "/etc/ca.crt",
    )
    assert memo.api_client is memo.options.api_client  # kept for the startup handler: one client


def test_a_verification_event_is_counted_and_handed_to_the_runner() -> None:
    async def scenario() -> None:
        op = operator(rolled_out())
        memo = kopf.Memo(metrics=op.metrics, runner=op.runner)
        body = op.cluster.add_verification(verification())
        await verification_event(type="ADDED", body=kopf.Body(body), memo=memo)
        labels = {"application": "", "phase": "Pending", "reason": ""}  # no status yet
        assert op.metrics.registry.get_sample_value("rollback_verification_objects", labels) == 1
        await op.clock.run_until(lambda: op.phase() == "Succeeded", within=5)
        assert op.clock.time() == EPOCH
        assert op.status()["targets"][0]["namespace"] == NS

    asyncio.run(scenario())
