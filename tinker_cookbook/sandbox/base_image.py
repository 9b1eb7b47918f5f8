"""The project's Debian base image, built from Debian's own packages, for machines that reach a
package mirror but no image registry. The bundled Harbor tasks build `FROM` it.

    python -m tinker_cookbook.sandbox.base_image            # build it if missing (podman)
    python -m tinker_cookbook.sandbox.base_image engine=docker

`debootstrap --variant=minbase` fetches Debian's packages (about a minute), the folder is
imported into the engine as `BASE_IMAGE`, and later calls find it there and do nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from typing import Literal

import chz

from tinker_cookbook.sandbox.local_environment import BASE_IMAGE

Engine = Literal["podman", "docker"]
SUITE = "bookworm"
# Beyond minbase: what the bundled tasks and the file tools use, and what this Debian host has
# (so the `local` sandbox, which serves the host's /usr, matches the image).
EXTRA_PACKAGES = ("python3", "procps")


class BaseImageError(RuntimeError):
    """The base image could not be found or built; the message says what to install."""


def image_exists(engine: Engine, image: str = BASE_IMAGE) -> bool:
    if not shutil.which(engine):
        return False
    found = subprocess.run([engine, "image", "exists" if engine == "podman" else "inspect", image],
                           capture_output=True)  # fmt: skip
    return found.returncode == 0


def ensure_base_image(engine: Engine = "podman", image: str = BASE_IMAGE) -> str:
    """`image` in `engine`'s store, built with debootstrap when it is not there yet."""
    if image_exists(engine, image):
        return image
    for tool in (engine, "debootstrap"):
        if not shutil.which(tool):
            raise BaseImageError(
                f"building {image} needs `{tool}` (`bash scripts/setup.sh` installs it with apt)"
            )
    start = time.perf_counter()
    print(f"base image: building {image} with debootstrap ({SUITE}, minbase)", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="tinker-rootfs-") as root:
        include = ",".join(EXTRA_PACKAGES)
        _run(["debootstrap", "--variant=minbase", f"--include={include}", SUITE, root], image)
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run([engine, "import", "-", image], stdin=tar.stdout,
                                  capture_output=True, text=True)  # fmt: skip
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise BaseImageError(
                f"importing {image} into {engine} failed: {imported.stderr[-800:]}"
            )
    print(f"base image: {image} ready in {time.perf_counter() - start:.0f}s", file=sys.stderr)
    return image


def _run(argv: list[str], image: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise BaseImageError(
            f"building {image}: `{' '.join(argv[:3])} ...` failed "
            f"(exit {result.returncode}): {(result.stderr or result.stdout)[-800:]}"
        )


@chz.chz
class Config:
    engine: Engine = "podman"


def main(config: Config) -> None:
    print(ensure_base_image(config.engine))


if __name__ == "__main__":
    chz.nested_entrypoint(main)
