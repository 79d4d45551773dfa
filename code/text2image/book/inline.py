"""Inline expressions `` `{python} expr` ``: evaluated and turned into text exactly as Quarto does.

Kernel side (``src/resources/jupyter/notebook.py`` ``cell_execute_inline``):
after the code cells before it, each Markdown cell's expressions go to the
kernel as ``user_expressions`` of an empty execute request, and the replies,
rich display bundles, are kept in the cell's ``metadata.user_expressions`` as
``[{"expression", "result"}]``; a failed expression fails the render.

Text side (``src/core/jupyter/jupyter-inline.ts`` ``resolveUserExpressions``,
``display-data.ts`` ``displayDataMimeType`` for HTML output): the first of
``text/html`` (as raw HTML), ``text/markdown`` (as is), images, then
``text/plain``. Plain text has its surrounding quotes stripped and is then
escaped for Markdown: backslashes doubled, then ``\\`*_{}[]()>#+-.!`` and the
characters of the range ``+-.`` (so ``,`` too) backslash-escaped. A ``str`` is
shown through its ``repr``, so a narrow no-break space becomes the six
characters ``\\u202f`` on the page: text meant as prose must reach the kernel
as Markdown (``IPython.display.Markdown``, or ``text2image.lang``'s values,
which have ``_repr_markdown_``). An empty result leaves the expression as
written (``execute-inline.ts``).
"""

from __future__ import annotations

import re
from pathlib import Path

from text2image.book.errors import BookError, strip_ansi, where

# displayDataMimeType for HTML output: the widget/html cluster first, then Markdown, images, plain text.
HTML_PRIORITY = (
    "application/vnd.jupyter.widget-state+json", "application/vnd.jupyter.widget-view+json",
    "application/javascript", "text/html", "text/markdown", "image/svg+xml", "image/png", "image/jpeg",
    "text/plain",
)
MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()>#+-.!])")


def as_escaped_markdown(text: str) -> str:
    """``asEscapedMarkdown``: a quoted repr loses its quotes and is escaped; anything else is kept as is."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
        return MARKDOWN_SPECIAL.sub(r"\\\1", text.replace("\\", "\\\\"))
    return text


def markdown(result: dict) -> str | None:
    """The Markdown Quarto puts in place of one expression, from its ``user_expressions`` reply."""
    data = result.get("data") or {}
    mime = next((m for m in HTML_PRIORITY if m in data), None)
    if mime is None:
        return None
    value = data[mime]
    value = "".join(map(str, value)) if isinstance(value, list) else str(value)
    if mime == "text/html":
        return f"`{value}`{{=html}}"
    if mime == "text/markdown":
        return value
    return as_escaped_markdown(value)


def results(node) -> dict[str, dict]:
    """``{expression: result}`` of a Markdown cell, as the notebook keeps them."""
    return {item["expression"]: item["result"] for item in (node.get("metadata") or {}).get("user_expressions", [])}


def evaluate(client, doc, index: int, node, root: Path) -> None:
    """Send the cell's expressions to the kernel now and keep the replies in ``metadata.user_expressions``."""
    cell = doc.cells[index]
    node.metadata.pop("user_expressions", None)
    if not cell.inline:
        return
    expressions = {str(k): item.expr for k, item in enumerate(cell.inline)}
    reply = client.wait_for_reply(client.kc.execute("", silent=True, store_history=False,
                                                    user_expressions=expressions))
    if reply is None:
        raise BookError(f"{where(doc.path, cell.line, root)}: the kernel did not answer the inline expressions")
    replies = reply["content"].get("user_expressions", {})
    kept = []
    for key, item in enumerate(cell.inline):
        result = replies.get(str(key), {})
        if result.get("status") != "ok":
            trace = strip_ansi("\n".join(result.get("traceback", [])))
            raise BookError(
                f"{where(doc.path, item.line, root)}: inline expression `{{python}} {item.expr}` failed: "
                f"{result.get('ename')}: {result.get('evalue')}" + (f"\n{trace}" if trace else "")
            )
        kept.append({"expression": item.expr, "result": {"data": result.get("data", {}),
                                                          "metadata": result.get("metadata", {})}})
    node.metadata["user_expressions"] = kept
