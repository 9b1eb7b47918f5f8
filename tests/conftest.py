import os

import pytest

# Tests never touch the user's cache or the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("tinker_cookbook_cache")
    os.environ["TINKER_COOKBOOK_CACHE"] = str(path)
    yield path


@pytest.fixture(scope="session")
def service(isolated_cache):
    from tinker_cookbook.local import LocalBackendConfig, ServiceClient

    return ServiceClient(LocalBackendConfig(checkpoint_dir=str(isolated_cache / "checkpoints")))


@pytest.fixture(scope="session")
def tokenizer(service):
    return service.get_tokenizer("tiny-qwen3-1m")
