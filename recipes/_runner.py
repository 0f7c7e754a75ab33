"""What every recipe shares: its command line, where its record goes, the machine line.

Every recipe takes `--seeds S [S ...]` (default 0 1 2), `--out FILE` (the
JSON record is also written there, e.g. for a run on another machine) and
`--no-write` (leave `recipes/results/` and the README tables alone).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, "results")
SEEDS = (0, 1, 2)
README_PATH = os.path.join(HERE, "README.md")


def seeds_and_out(parser: argparse.ArgumentParser) -> tuple[list[int], str | None, object]:
    """Adds the shared options to `parser`, parses, returns (seeds, out, args)."""
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--out", default=None, help="also write the JSON record here")
    parser.add_argument("--no-write", action="store_true", help="leave recipes/results alone")
    args = parser.parse_args()
    return args.seeds, args.out, args


def write_report(report: dict, relative_path: str, out: str | None, results: bool) -> bool:
    """Writes `report` to `out` (if given) and to recipes/results/<relative_path> (if `results`).

    Returns whether the results folder was written (so the caller refreshes its table).
    """
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            json.dump(report, f, indent=1)
    if not results:
        return False
    path = os.path.join(RESULTS_DIR, relative_path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    return True


def machine() -> str:
    """The machine a record was measured on: the GPU's name where there is one."""
    line = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"
    try:
        gpu = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        gpu = ""
    return f"{line}; GPU: {gpu}" if gpu else line


def replace_readme_table(begin: str, end: str, text: str) -> None:
    """Replaces what stands between the markers `begin` and `end` of
    recipes/README.md with `text` (nothing happens where a marker is missing)."""
    if not os.path.exists(README_PATH):
        return
    with open(README_PATH) as f:
        readme = f.read()
    if begin not in readme or end not in readme:
        return
    head, rest = readme.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(README_PATH, "w") as f:
        f.write(f"{head}{begin}\n{text}\n{end}{tail}")
