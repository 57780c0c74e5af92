"""Generated parts of the docs: the configuration tables (``./run docs`` rewrites them)."""

from __future__ import annotations

import re
from pathlib import Path

from sagaloom._settings import CLI_SETTINGS, WORKER_SETTINGS, markdown_table

ROOT = Path(__file__).resolve().parent.parent
CONFIG_PAGE = ROOT / "docs" / "configuration.md"


def generated_blocks() -> dict[str, str]:
    """Marker name -> the block between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    return {
        "worker-settings": markdown_table(WORKER_SETTINGS),
        "cli-settings": markdown_table(CLI_SETTINGS),
    }


def main() -> None:
    """Rewrite every generated block of the configuration page in place."""
    page = CONFIG_PAGE.read_text()
    for name, block in generated_blocks().items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(page):
            raise SystemExit(f"{CONFIG_PAGE}: no <!-- {name}:start/end --> markers")
        page = pattern.sub(lambda m, b=block: m.group(1) + b + m.group(2), page)
    CONFIG_PAGE.write_text(page)
    print(f"wrote {CONFIG_PAGE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
