import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Tests never touch the user's caches: Hugging Face runs offline, this package's cache is a
# temporary folder (below), and the scale-out test builds its server's venv in the project's
# own .cache/. The only network any test uses is that venv's packages, from PyPI.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="tinker-tests-hf-"))


# Podman on machines like this one (see scripts/podman/containers.conf), never by editing the
# machine's own configuration; Harbor finds podman-compose beside this interpreter.
def podman_conf() -> Path:
    """The project's containers.conf; without the host's local CA folder, a copy that does not
    mount it (podman refuses a volume whose source is missing)."""
    conf = ROOT / "scripts" / "podman" / "containers.conf"
    if Path("/usr/local/share/ca-certificates").is_dir():
        return conf
    lines = [line for line in conf.read_text().splitlines() if not line.startswith("volumes")]
    copy = Path(tempfile.mkdtemp(prefix="tinker-podman-")) / "containers.conf"
    copy.write_text("\n".join(lines) + "\n")
    return copy


os.environ.setdefault("CONTAINERS_CONF", str(podman_conf()))
os.environ.setdefault("BUILDAH_ISOLATION", "chroot")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


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


@pytest.fixture(scope="session")
def podman():
    """Podman with the project's Debian base image (built from Debian's packages once per
    machine; `scripts/setup.sh` installs podman and debootstrap)."""
    if not shutil.which("podman"):
        pytest.skip("podman is not installed (bash scripts/setup.sh installs it)")
    from tinker_cookbook.sandbox.base_image import ensure_base_image

    ensure_base_image("podman")
    return "podman"
