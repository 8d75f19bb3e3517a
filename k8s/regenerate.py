"""Re-render every checked-in manifest under k8s/ with the command in its header.

    python k8s/regenerate.py          # rewrite the files
    python k8s/regenerate.py --check  # exit 1 if a file differs from what its command renders

Run from anywhere; commands run from the repository root, as the manifests' configs are relative
to it. Each manifest's first line is ``# Rendered by: raytrainer k8s ...``.
"""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from raytrainer.cli import build_parser
from raytrainer.k8s.cli import render_text

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "# Rendered by: "


def rendered_manifests() -> list[Path]:
    return sorted(p for p in (ROOT / "k8s").glob("*.yaml")
                  if p.read_text().startswith(PREFIX))


def render_again(path: Path) -> str:
    """What the command in ``path``'s header renders now."""
    command = path.read_text().splitlines()[0][len(PREFIX):]
    argv = shlex.split(command)
    args = build_parser().parse_args(argv[1:])
    return render_text(args, ROOT)


def main(argv: list[str]) -> int:
    os.chdir(ROOT)
    stale = []
    for path in rendered_manifests():
        text = render_again(path)
        if path.read_text() != text:
            stale.append(path.name)
            if "--check" not in argv:
                path.write_text(text)
    verb = "differ from their commands" if "--check" in argv else "re-rendered"
    print(f"{verb}: {', '.join(stale) or 'none'}")
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
