"""The backend factory picks the local engine or the real SDK."""

import pytest
import tinker

from tinker_cookbook import local
from tinker_cookbook.backend import make_run_service_client, make_service_client, resolve_backend


def test_auto_is_local_without_a_key_and_tinker_with_one(monkeypatch):
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    assert resolve_backend("auto") == "local"
    assert isinstance(make_service_client("auto"), local.ServiceClient)
    monkeypatch.setenv("TINKER_API_KEY", "tml-dummy")
    assert resolve_backend("auto") == "tinker"


def test_tinker_backend_returns_the_sdk_client(monkeypatch):
    monkeypatch.setenv("TINKER_API_KEY", "tml-dummy")
    client = make_service_client("tinker")  # hosted Tinker; lazy: no request is made yet
    assert isinstance(client._inner, tinker.ServiceClient)
    with pytest.raises(ConnectionError, match="'http://127.0.0.1:9' is not reachable"):
        make_service_client("tinker", base_url="http://127.0.0.1:9")
    monkeypatch.delenv("TINKER_API_KEY")
    with pytest.raises(ValueError, match="needs TINKER_API_KEY"):
        make_service_client("tinker")


def test_local_options_reach_the_local_config(isolated_cache):
    client = make_service_client("local", checkpoint_dir=str(isolated_cache / "ck"))
    assert client.checkpoint_root == isolated_cache / "ck"


def test_bad_backend_names_are_rejected():
    with pytest.raises(ValueError, match="'gpu' is not one of"):
        make_service_client("gpu")
    with pytest.raises(ValueError, match="only apply to backend='local'"):
        make_service_client("tinker", checkpoint_dir="/tmp/x")


def test_a_run_asks_the_local_backend_to_compile_only_when_it_uses_it(monkeypatch, tmp_path):
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    client = make_run_service_client("local", None, str(tmp_path), local_compile=True)
    assert client.config.compile
    monkeypatch.setenv("TINKER_API_KEY", "tml-dummy")
    with pytest.raises(ValueError, match="local_compile=True applies to the local backend only"):
        make_run_service_client("auto", None, str(tmp_path), local_compile=True)
