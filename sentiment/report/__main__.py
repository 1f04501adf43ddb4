"""python -m sentiment.report [--check]: rewrite the generated documents, or exit 1 if one is out of date."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sentiment.report.experiments import timing_tables
from sentiment.report.markdown import replace_block
from sentiment.report.readme import updated_readme
from sentiment.report.results import results_page


def generated_files(root: Path = Path(".")) -> dict[Path, str]:
    """Every generated document, as it should read now."""
    experiments = root / "docs" / "experiments.md"
    return {
        root / "README.md": updated_readme((root / "README.md").read_text(), root),
        root / "docs" / "results.md": results_page(root),
        experiments: replace_block(experiments.read_text(), timing_tables(root), str(experiments)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Rewrite the generated documents from results/ and docs/results/.")
    parser.add_argument("--check", action="store_true", help="fail if a generated document is out of date")
    args = parser.parse_args()
    stale = []
    for path, text in generated_files().items():
        if not path.exists() or path.read_text() != text:
            stale.append(str(path))
            if not args.check:
                path.write_text(text)
    if args.check and stale:
        print(f"error: out of date: {', '.join(stale)}: run `python -m sentiment.report`", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
