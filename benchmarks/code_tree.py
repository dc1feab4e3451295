"""A clean copy of a committed tree (git archive), for a benchmark to run its code from.

The work tree is shared with engineers editing stages at the same time: a half-made edit must not
break or skew a long measurement, and every figure names the commit it measured.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def code_tree(rev: str, work: Path) -> tuple[str, Path]:
    """The tree of `rev` extracted once under `work/code-<short sha>`; returns (short sha, path)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    tree = Path(work) / f"code-{sha}"
    if not (tree / "transforms").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return sha, tree
