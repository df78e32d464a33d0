"""The review page of a condition: ``label_issues.html``, every flagged image in one self-contained file.

It opens from disk: the thumbnails are embedded (data URIs), the script and styles inline, nothing is
fetched. Only the current page of cards is in the document (``PAGE`` cards), so thousands of flagged rows
stay responsive; filters (given class, suggested class, method or issue, decision) and the sort apply to
all of them. Each card carries its dataset row as ``data-row``. A person marks a card keep, drop, or
relabel as a class (buttons, or keys: k, d, 0-9 / the class menu, u to undo; arrows move between cards);
the decisions stay in the browser (localStorage) and "export decisions" saves ``decisions-<cond>.csv``:
one line per training row, ``row,id,label,decision`` (the label after the decision), which
``noise --labels NAME=FILE`` reads back as a condition (``pipeline.decisions``).
"""

from __future__ import annotations

import base64
import io
import json
import re
from importlib import resources

import numpy as np

PAGE = 60  # cards per page
MAX_CARDS = 20_000  # cards on one page, lowest label quality first (the CSVs list every flagged row)
THUMB = 128  # px: larger images are shown as thumbnails of this size
# The page's template (package data): review.html with the fields below; its styles and script inlined from
# review.css and review.js, so the page opens from disk and fetches nothing.
TEMPLATES = resources.files("pipeline") / "templates"
FIELD = re.compile(r"__(STYLE|SCRIPT|TITLE|DATA)__")


def thumbnail(image: np.ndarray) -> str:
    """A data URI of one uint8 HWC image: PNG as it is up to THUMB px, else a JPEG thumbnail."""
    from PIL import Image

    im = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)
    buf = io.BytesIO()
    if max(im.size) <= THUMB:
        im.save(buf, "PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    im.thumbnail((THUMB, THUMB), Image.LANCZOS)
    im.convert("RGB").save(buf, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def render(
    cond: str,
    classes: list[str],
    ids: list[str],
    labels: list[int],
    cards: list[dict],
    images: dict[int, str],
    key: str,
    flagged: int | None = None,
) -> bytes:
    """The page: ``cards`` (row, given, suggested, score, methods, true, outlier, near_duplicate_of, and in a
    condition of several annotators ``annotators``: [name, label] of each who labelled the row), the
    thumbnails of their rows and near-duplicate partners (``images``, by row), every training row's id and
    label (the export writes them all), ``key``: what the browser keeps this page's decisions under;
    ``flagged``: how many rows were flagged, where the cards are the first ``MAX_CARDS`` of them."""
    data = {
        "cond": cond,
        "classes": classes,
        "ids": ids,
        "labels": labels,
        "cards": cards,
        "flagged": flagged,
        "images": {str(k): v for k, v in images.items()},
        "key": key,
        "page": PAGE,
    }
    # JSON inside <script>: "<" escaped, so no text of the data (a file name, a class) can end the element.
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    fields = {
        "STYLE": (TEMPLATES / "review.css").read_text(),
        "SCRIPT": (TEMPLATES / "review.js").read_text(),
        "TITLE": _escape(f"label issues: {cond}"),
        "DATA": payload,
    }
    # One pass over the HTML: what is filled in is never searched again (a class named __DATA__ stays text).
    return FIELD.sub(lambda m: fields[m[1]], (TEMPLATES / "review.html").read_text()).encode()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
