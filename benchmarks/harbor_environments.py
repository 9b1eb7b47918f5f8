"""Per-episode environment cost, podman against the local sandbox, for 1 and 8 concurrent
episodes of a bundled task (image built and cached before timing): start, one exec round trip,
grading by Harbor's verifier, cleanup. Prints JSON; `ratio_podman_vs_local` compares the two
measured in this same run.

    .venv/bin/python benchmarks/harbor_environments.py [--task count-lines] [--repeats 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "scripts" / "podman" / "containers.conf"))
os.environ.setdefault("BUILDAH_ISOLATION", "chroot")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from tinker_cookbook.recipes.harbor_rl.environments import (  # noqa: E402
    resolve_environment,
    start_environment,
)
from tinker_cookbook.recipes.harbor_rl.harbor_tasks import (  # noqa: E402
    BUNDLED_TASKS_DIR,
    load_harbor_task,
)
from tinker_cookbook.sandbox.base_image import ensure_base_image  # noqa: E402

PHASES = ("start", "exec", "grade", "cleanup")


async def episode(task, environment: str) -> dict[str, float]:
    times, t = {}, time.perf_counter()
    env = await start_environment(task, environment)
    times["start"], t = time.perf_counter() - t, time.perf_counter()
    try:
        result = await env.sandbox.run_command("echo ok")
        assert result.stdout.strip() == "ok", result
        times["exec"], t = time.perf_counter() - t, time.perf_counter()
        await env.verify()
        times["grade"], t = time.perf_counter() - t, time.perf_counter()
    finally:
        await env.stop()
    times["cleanup"] = time.perf_counter() - t
    return times


async def measure(task, environment: str, concurrent: int) -> dict[str, float]:
    start = time.perf_counter()
    runs = await asyncio.gather(*[episode(task, environment) for _ in range(concurrent)])
    wall = time.perf_counter() - start
    out = {f"{p}_s": statistics.median(r[p] for r in runs) for p in PHASES}
    out["episode_s"] = statistics.median(sum(r.values()) for r in runs)
    out["wall_s"] = wall
    out["episodes_per_s"] = concurrent / wall
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="count-lines")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    ensure_base_image("podman")
    task = load_harbor_task(BUNDLED_TASKS_DIR / args.task)
    podman = resolve_environment("podman")
    asyncio.run(episode(task, podman))  # build and cache the image; warm both paths
    asyncio.run(episode(task, "local"))
    results: dict[str, dict] = {}
    for concurrent in (1, 8):
        for environment in ("local", podman):
            samples = [
                asyncio.run(measure(task, environment, concurrent)) for _ in range(args.repeats)
            ]
            results[f"{environment}_x{concurrent}"] = {
                k: round(statistics.median(s[k] for s in samples), 3) for k in samples[0]
            }
    for concurrent in (1, 8):
        local, pod = results[f"local_x{concurrent}"], results[f"{podman}_x{concurrent}"]
        results[f"ratio_podman_vs_local_x{concurrent}"] = {
            "episode_s": round(pod["episode_s"] / local["episode_s"], 1),
            "episodes_per_s": round(pod["episodes_per_s"] / local["episodes_per_s"], 3),
        }
    json.dump({"task": args.task, "cpus": os.cpu_count(), **results}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
