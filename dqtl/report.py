"""The HTML report of a CLI run: ``PREFIX.report.html``, one self-contained file (no network).

It lists the run's outputs with links relative to the report (tables, parquet files, stores, the
run log), shows the first rows of each text table and embeds every PNG the run wrote (base64), so
it opens anywhere, also copied away from the results. Written by :class:`dqtl.runlog.RunLog` when
a run succeeds, beside its other outputs.
"""

from __future__ import annotations

import base64
import html
import os
import posixpath
from collections.abc import Sequence
from datetime import UTC, datetime

__all__ = ["write_report", "report_path"]

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.8em}td,th{border:1px solid #ddd;padding:2px 6px}
code{background:#f4f4f4;padding:1px 4px}img{max-width:100%;border:1px solid #eee}
.meta{color:#666;font-size:.9em}"""


def report_path(log_path: str) -> str:
    """``PREFIX.report.html`` for a run log ``PREFIX.dqtl.<command>.log`` (or tensorQTL's
    ``PREFIX.tensorQTL.<mode>.log``)."""
    for marker in (".dqtl.", ".tensorQTL."):
        if marker in posixpath.basename(log_path):
            return log_path[: log_path.rindex(marker)] + ".report.html"
    return log_path + ".report.html"


def _rel(path: str, start: str) -> str:
    if "://" in path or "://" in start:
        return posixpath.relpath(path.split("://", 1)[1], posixpath.dirname(start.split("://", 1)[1]))
    return os.path.relpath(os.path.abspath(path), os.path.dirname(os.path.abspath(start)))


def _preview(path: str, rows: int = 8) -> str:
    """The first rows of a tab-separated (optionally gzipped) table, as HTML."""
    import pandas as pd

    from dqtl.io.fs import open_file

    try:
        with open_file(path, "rb") as f:
            df = pd.read_csv(f, sep="\t", nrows=rows, compression="gzip" if path.endswith(".gz") else None)
    except Exception:  # noqa: BLE001 - a preview is optional; the link is what matters
        return ""
    return df.to_html(index=False, border=0, float_format=lambda v: f"{v:.4g}")


def write_report(path: str, *, command: Sequence[str], outputs: Sequence[str],
                 log_file: str | None, seconds: float, write_to: str | None = None) -> None:
    """Write the report of a run whose published files are ``outputs``: links relative to
    ``path`` (its final place), written to ``write_to`` (default ``path``)."""
    from dqtl import __version__
    from dqtl.io.fs import open_file

    sub = next((c for c in command if not c.startswith("-")), "")
    title = f"dqtl {sub} report"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p class='meta'>dqtl {__version__}, {datetime.now(UTC).isoformat(timespec='seconds')}"
             f", {seconds:.1f} s</p>",
             f"<p><code>{html.escape(' '.join(['dqtl', *command]))}</code></p>",
             "<h2>Files</h2><ul>"]
    from dqtl.io.fs import exists

    # files a run published into its own work folders (removed since) are not outputs
    files = [o for o in dict.fromkeys(outputs) if o != path and exists(o)]
    if log_file:
        files.append(log_file)
    for f in files:
        rel = _rel(f, path)
        parts.append(f"<li><a href='{html.escape(rel)}'>{html.escape(rel)}</a></li>")
    parts.append("</ul>")
    for f in files:
        name = html.escape(_rel(f, path))
        if f.endswith(".png"):
            with open_file(f, "rb") as fh:
                data = base64.b64encode(fh.read()).decode()
            parts.append(f"<h2>{name}</h2><img alt='{name}' src='data:image/png;base64,{data}'>")
        elif f.endswith((".txt.gz", ".tsv", ".tsv.gz", ".txt")) and f != log_file:
            preview = _preview(f)
            if preview:
                parts.append(f"<h2>{name} (first rows)</h2>{preview}")
    parts.append("</body></html>")
    with open_file(write_to or path, "w") as fh:
        fh.write("\n".join(parts))
