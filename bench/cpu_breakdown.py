r"""``python -m bench.cpu_breakdown PROFILE``: where a benchmark process's CPU goes, by part.

Reads a py-spy profile in its raw (collapsed stacks) format, recorded around a benchmark::

    py-spy record --format raw --rate 200 -o fast.txt -- python -m bench.readme \
        --only "README's way, fast path (local + eager)" --rounds 1

and prints the share of busy samples by part of the process (a thread waiting for work or I/O
is left out): each sample counts for the first part its stack names, from the innermost frame
out (the SDK's sandbox before the engine that runs in it, pydantic before the converter that
calls it, and so on).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

__all__ = ["IDLE", "PARTS", "breakdown"]

IDLE = re.compile(r"concurrent/futures/thread\.py:8[0-9]\)$|selectors\.py:\d+\)$")
"""Innermost frames of a thread that waits (a pool thread for work, the loop for I/O)."""

PARTS: tuple[tuple[str, str], ...] = (
    ("the workflow sandbox (imports, restricted proxies)", r"workflow_sandbox"),
    ("pydantic (models, payload conversion)", r"pydantic"),
    ("protobuf (messages to and from the SDK core)", r"google/protobuf|_pb2"),
    ("the SDK's bridge to its core (activations, completions)", r"temporalio/bridge"),
    ("the engine's workflow code", r"sagaloom/_runtime|sagaloom/_saga"),
    ("the engine's client (start_saga, outcome)", r"sagaloom/client"),
    ("the engine, other", r"sagaloom/"),
    ("the benchmark's steps and harness", r"bench/"),
    ("the SDK's workflow instance and worker", r"temporalio/worker"),
    ("the SDK's client", r"temporalio/client|temporalio/service"),
    ("the SDK, other", r"temporalio/"),
    ("the asyncio event loop", r"asyncio/"),
)


def breakdown(profile: str) -> Counter[str]:
    """Samples by part, from py-spy's raw format (``frame;frame;... count`` per line)."""
    parts: Counter[str] = Counter()
    patterns = [(name, re.compile(pattern)) for name, pattern in PARTS]
    for line in profile.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if IDLE.search(frames[-1]):
            continue
        part = "other (the interpreter, threads, the standard library)"
        for frame in reversed(frames):
            found = next((name for name, pattern in patterns if pattern.search(frame)), None)
            if found is not None:
                part = found
                break
        parts[part] += int(count)
    return parts


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_breakdown", description=__doc__)
    parser.add_argument("profile", type=Path)
    args = parser.parse_args()
    parts = breakdown(args.profile.read_text())
    total = sum(parts.values()) or 1
    print(f"| part | share of {total:,} samples |\n|---|---|")
    for part, count in parts.most_common():
        print(f"| {part} | {100 * count / total:.1f} % |")


if __name__ == "__main__":
    main()
