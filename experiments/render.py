"""Rewrite every marked block of README.md, BENCHMARKS.md and docs/*.md from the committed results files, or
(``--check``) exit 1 naming each block that differs from what its results render. CI runs ``--check``: a number
typed into a block by hand, or a results file changed without rendering, fails it.

    python experiments/render.py            # rewrite the blocks
    python experiments/render.py --check    # verify them (the README's test block runs this)
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DOCUMENTS, RESULTS, ROOT, block_pattern, load

#: the experiments whose results render into blocks, each a module here with NAME and render(results)
EXPERIMENTS = (
    "own_videos",
    "demo",
    "test_suite",
    "cpu_small",
    "recipes_cost",
    "hard_negatives",
    "parity",
    "trust",
    "refine",
    "bench",
    "case_choices",
)


def rendered() -> dict[str, str]:
    """Every block's Markdown, by block name, from the results files."""
    blocks: dict[str, str] = {}
    for module_name in EXPERIMENTS:
        module = importlib.import_module(module_name)
        names = getattr(module, "NAMES", None)  # a block drawn from several results files (one per method)
        results = {n: load(n) for n in names if (RESULTS / f"{n}.json").exists()} if names else load(module.NAME)
        for name, text in module.render(results).items():
            if name in blocks:
                raise SystemExit(f"block {name!r} is rendered twice ({module_name})")
            blocks[name] = text if text.endswith("\n") else text + "\n"
    return blocks


def apply(check: bool) -> list[str]:
    """The blocks that differ (rewritten unless ``check``); a block missing from every document is an error."""
    wanted, found, differing = rendered(), set(), []
    for document in DOCUMENTS:
        text = document.read_text()
        new = text
        for name, markdown in wanted.items():
            pattern = block_pattern(name)
            if not pattern.search(new):
                continue
            found.add(name)
            new = pattern.sub(lambda m, md=markdown: m.group(1) + md + m.group(3), new)
            before = pattern.search(text)
            if before is None or before.group(2) != markdown:
                differing.append(f"{document.relative_to(ROOT)}: {name}")
        if new != text and not check:
            document.write_text(new)
    missing = sorted(set(wanted) - found)
    if missing:
        raise SystemExit(f"no document has the block(s) {', '.join(missing)}: add <!-- NAME:begin/end --> markers")
    return differing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only verify; exit 1 naming each differing block")
    args = parser.parse_args()
    differing = apply(args.check)
    for entry in differing:
        print(("differs from its results: " if args.check else "rewrote ") + entry)
    return 1 if args.check and differing else 0


if __name__ == "__main__":
    sys.exit(main())
