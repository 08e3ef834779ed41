"""Regenerate the README's config-keys table: `python -m fedlib.config.docs` (or `make docs`)."""

from __future__ import annotations

import re
from pathlib import Path

from . import describe

README = Path(__file__).resolve().parents[2] / "README.md"


def table() -> str:
    return "| key | type | default | meaning |\n|---|---|---|---|\n" + "".join(
        f"| `{k}` | {t} | `{d}` | {h.replace('|', '/')} |\n" for k, t, d, h in describe())


def main() -> None:
    text = README.read_text()
    new = re.sub(r"<!-- config-keys:start -->\n.*<!-- config-keys:end -->",
                 lambda _: f"<!-- config-keys:start -->\n{table()}<!-- config-keys:end -->", text, flags=re.S)
    README.write_text(new)


if __name__ == "__main__":
    main()
