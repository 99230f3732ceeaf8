"""One WNB letter draft, read from the store for a person to print: as text, HTML or PDF.

A letter names a child and their parent, so reading one is a read of that child's data, audited
as a chronology read is (reports/audit.py): the row is written and committed before anything is
shown. The draft is the CommunicationRequest the pipeline wrote beside the send-wnb-letter Task
(decisions/letter.py); it is found from the Task's id (``letter_id``), never by a search, so a
mistyped id reads nothing. HTML goes through the trust's page template with autoescape; the PDF
is laid out with fpdf2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from fpdf import FPDF

from fhir_engagement.decisions.ids import letter_id
from fhir_engagement.decisions.lettertemplates import LetterTemplates
from fhir_engagement.errors import ReportError
from fhir_engagement.identity import nhs_of
from fhir_engagement.reports.audit import Auditor, Read
from fhir_engagement.store.base import Store

__all__ = ["Letter", "letter_html", "letter_pdf", "open_letter"]

# A Unicode font where the machine has one (Debian's fonts-dejavu-core), so a name in any
# European script prints as written; else the PDF core font, which holds Latin-1 only.
_FONTS = (Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
          Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"))


@dataclass(frozen=True, slots=True)
class Letter:
    """A draft as read: its title (first line), paragraphs, language and the audited read."""

    title: str
    body: str
    language: str
    read: Read

    @property
    def text(self) -> str:
        return f"{self.title}\n\n{self.body}"

    def paragraphs(self) -> list[list[str]]:
        """The body as paragraphs of lines (a blank line ends a paragraph)."""
        blocks = [b for b in self.body.split("\n\n") if b.strip()]
        return [b.strip("\n").split("\n") for b in blocks]


def open_letter(store: Store, task_id: str, auditor: Auditor, copy: str = "parent",
                detail: str = "") -> Letter:
    """The draft of ``copy`` (parent, gp) for the send-wnb-letter Task ``task_id``, audited.

    Raises:
        ReportError: no such draft in the store (the message never repeats a child's details).
    """
    row = store.output(letter_id(task_id.strip(), copy))
    if row is None or row.kind != "CommunicationRequest":
        raise ReportError(f"no letter draft for Task {task_id.strip()!r} in this store: give the "
                          "id of a send-wnb-letter Task (its identifier value, fe-task-...)")
    draft = orjson.loads(row.resource)
    read = auditor.letter(store, row.child, _audited_subject(store, row.child, draft),
                          f"{copy} letter, {detail}".rstrip(", "))
    title, _, body = str(draft["payload"][0]["contentString"]).partition("\n\n")
    return Letter(title, body, str(draft.get("language", "en")), read)


def _audited_subject(store: Store, child: str, draft: dict[str, Any]) -> dict[str, Any]:
    """The child as the AuditEvent names them: by NHS number where known, else as the draft does."""
    nhs = nhs_of(store, child)
    if nhs is not None:
        return {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs},
                "type": "Patient"}
    subject = dict(draft.get("subject") or {})
    return subject or {"display": "the child of a letter draft"}


def letter_html(letter: Letter, templates: LetterTemplates) -> str:
    """The letter as an HTML page: the trust's page template, every value autoescaped."""
    return templates.page.render(language=letter.language, subject=letter.title,
                                 paragraphs=letter.paragraphs())


def letter_pdf(letter: Letter) -> bytes:
    """The letter as an A4 PDF: the title in bold, then its paragraphs."""
    pdf = FPDF(format="A4")
    pdf.set_margins(25, 25, 25)
    pdf.add_page()
    family, encode = _font(pdf)
    pdf.set_font(family, "B", 14)
    pdf.multi_cell(0, 8, encode(letter.title))
    pdf.ln(4)
    pdf.set_font(family, "", 12)
    for paragraph in letter.paragraphs():
        pdf.multi_cell(0, 6.5, encode("\n".join(paragraph)))
        pdf.ln(3)
    return bytes(pdf.output())


def _font(pdf: FPDF) -> tuple[str, Any]:
    for path in _FONTS:
        if path.is_file():
            pdf.add_font("letter", "", str(path))
            bold = path.with_name("DejaVuSans-Bold.ttf")
            pdf.add_font("letter", "B", str(bold if bold.is_file() else path))
            return "letter", lambda text: text
    # Latin-1 only: other characters print as "?" rather than stopping the letter.
    return "helvetica", lambda text: text.encode("latin-1", "replace").decode("latin-1")
