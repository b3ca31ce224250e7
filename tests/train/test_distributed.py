"""Process-group setup: gloo ranks on one machine talk over loopback."""

from __future__ import annotations

import os

import pytest

from flashmd.train import distributed


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("GLOO_SOCKET_IFNAME", raising=False)
    return monkeypatch


@pytest.mark.parametrize("address", ["127.0.0.1", "localhost", "::1"])
def test_a_loopback_master_pins_gloo_to_the_loopback_interface(clean_env, address):
    interface = distributed.loopback_interface()
    assert interface is not None  # every machine the tests run on has one
    distributed._pin_gloo_to_loopback(address)
    assert os.environ["GLOO_SOCKET_IFNAME"] == interface


@pytest.mark.parametrize("address", ["10.1.2.3", "node017", ""])
def test_a_remote_master_leaves_the_interface_to_gloo(clean_env, address):
    distributed._pin_gloo_to_loopback(address)
    assert "GLOO_SOCKET_IFNAME" not in os.environ


def test_an_interface_the_user_chose_is_kept(clean_env):
    clean_env.setenv("GLOO_SOCKET_IFNAME", "eth7")
    distributed._pin_gloo_to_loopback("127.0.0.1")
    assert os.environ["GLOO_SOCKET_IFNAME"] == "eth7"
