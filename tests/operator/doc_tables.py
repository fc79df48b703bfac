"""Read the worked-example tables of decision docstrings, so the tests check exactly those rows."""

from __future__ import annotations


def doc_table(doc: str | None, first_header: str) -> list[dict[str, str]]:
    """Rows of the Markdown table whose header starts with ``| <first_header>``."""
    lines = (doc or "").splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(f"| {first_header}"))
    header = [cell.strip() for cell in lines[start].strip().strip("|").split("|")]
    rows: list[dict[str, str]] = []
    for line in lines[start + 2 :]:
        if not line.strip().startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows.append(dict(zip(header, cells, strict=True)))
    return rows
