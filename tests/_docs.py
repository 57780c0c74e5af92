"""Generated parts of the docs: the configuration tables and the CLI reference.

``./run docs`` rewrites them; ``tests/worker/test_config.py`` fails when a page drifts from what the
code generates (a renamed flag, a removed variable).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from sagaloom._cli import parser
from sagaloom._config._settings import CLI_SETTINGS, WORKER_SETTINGS, markdown_table

ROOT = Path(__file__).resolve().parent.parent
CONFIG_PAGE = ROOT / "docs" / "configuration.md"
CLI_PAGE = ROOT / "docs" / "cli.md"


def generated_blocks() -> dict[str, str]:
    """Marker name -> the block between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    return {
        "worker-settings": markdown_table(WORKER_SETTINGS),
        "cli-settings": markdown_table(CLI_SETTINGS),
    }


def _flag(action: argparse.Action) -> str:
    names = ", ".join(f"`{o}`" for o in action.option_strings)
    if action.nargs == 0:
        return names
    metavar = action.metavar or (
        "{" + ",".join(map(str, action.choices)) + "}" if action.choices else action.dest.upper()
    )
    return f"{names} `{metavar}`"


def _cell(text: str) -> str:
    """Help text as a table cell: no pipes, no tags."""
    return text.replace("|", "/").replace("<", "&lt;").replace(">", "&gt;")


def cli_reference() -> str:
    """Every ``saga`` command: what it does, its example, its arguments and flags."""
    top = parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    shared = {"-h", "--help", "--address", "--namespace", "--ui", "--api-key", "--tls-cert-path",
              "--tls-key-path", "--tls-ca-path", "--tls-server-name"}  # fmt: skip
    lines = [
        "# The `saga` command",
        "",
        "Generated from the command's parser (`./run docs` rewrites this page; a test fails when",
        "it drifts). Every command also takes the connection flags `--address`",
        "(`TEMPORAL_ADDRESS`), `--namespace` (`TEMPORAL_NAMESPACE`), `--ui`, and TLS or an API",
        "key: `--api-key`, `--tls-cert-path`, `--tls-key-path`, `--tls-ca-path`,",
        "`--tls-server-name` (the `TEMPORAL_*` variables); `saga --log-level` and `--log-format`",
        "go before the command. Every variable: [configuration](configuration.md).",
        "",
        "Every other page is held to this parser and the settings table too: a test fails when a",
        "page names a `saga` command or flag the parser lacks <!-- promise: docs-flags --> or a",
        "`SAGALOOM_*` variable that is neither a setting nor read by the code.",
        "<!-- promise: docs-variables -->",
        "",
    ]
    for name, command in sub.choices.items():
        example = (command.epilog or "").removeprefix("example:\n").strip()
        lines += [f"## saga {name}", "", f"{command.description}.", ""]
        if example:
            lines += ["```bash", example, "```", ""]
        rows = []
        for action in command._actions:
            if not action.option_strings:
                if action.dest in ("help",):
                    continue
                rows.append(f"| `{action.metavar or action.dest}` | {_cell(action.help or '')} |")
            elif not set(action.option_strings) & shared:
                rows.append(f"| {_flag(action)} | {_cell(action.help or '')} |")
        if rows:
            lines += ["| argument or flag | meaning |", "|---|---|", *rows, ""]
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    """Rewrite every generated block of the configuration page, and the CLI reference."""
    page = CONFIG_PAGE.read_text()
    for name, block in generated_blocks().items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(page):
            raise SystemExit(f"{CONFIG_PAGE}: no <!-- {name}:start/end --> markers")
        page = pattern.sub(lambda m, b=block: m.group(1) + b + m.group(2), page)
    CONFIG_PAGE.write_text(page)
    CLI_PAGE.write_text(cli_reference())
    print(f"wrote {CONFIG_PAGE.relative_to(ROOT)} and {CLI_PAGE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
