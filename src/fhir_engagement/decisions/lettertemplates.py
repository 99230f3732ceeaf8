"""The trust's WNB letter templates (mappings/letters/): loaded, compiled and tried at start-up.

One TOML file per language (``en.toml``, and a trust's own translations), each holding the words
(trust name, phone, leaflet, why each service matters) and two Jinja2 templates, the parent's
letter and the GP's copy; ``page.html`` lays any letter out as HTML. Templates run in Jinja2's
sandbox with every variable required (StrictUndefined), and each is rendered once here with
sample values, so a broken template stops the start, not a letter. HTML is autoescaped; the
letter itself is plain text (``text/plain`` in the CommunicationRequest), where escaping would
print ``&#39;`` in O'Brien.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict

from fhir_engagement.config import load_model
from fhir_engagement.errors import LetterTemplateError

__all__ = ["LetterLanguage", "LetterTemplates", "load_letter_templates"]

SAMPLE: dict[str, Any] = {
    "child": "Sam", "to": "Alex Smith", "service": "dental", "day": "Monday 5 January 2026",
    "time": "10:00", "why": "Checks keep teeth healthy.", "language": "Polish", "gp": "Dr Jones",
    "situation": "this is the second missed appointment in a year", "letter": "Dear Alex",
    "home_visit": False, "care": "",
}
# Each template is tried once per care setting (rules.md s.8), so that a branch only one setting
# takes cannot hide a broken variable until the first letter from that setting.
_CARES = ("", "primary", "secondary")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Trust(_Strict):
    name: str
    phone: str = ""
    hours: str = ""
    leaflet_title: str
    leaflet_url: str = ""


class _Recipients(_Strict):
    codes: list[str] = []
    words: list[str] = []


class _Letter(_Strict):
    subject: str
    body: str


class _LetterFile(_Strict):
    language: str
    trust: _Trust
    recipients: _Recipients = _Recipients()
    why: dict[str, str]
    languages: dict[str, str] = {}
    parent: _Letter
    gp: _Letter


@dataclass(frozen=True, slots=True)
class LetterLanguage:
    """One language's letter: its words and compiled templates."""

    language: str
    trust: dict[str, str]
    recipient_codes: frozenset[str]
    recipient_words: tuple[str, ...]
    why: dict[str, str]
    language_names: dict[str, str]
    templates: dict[str, Template] = field(repr=False)

    def render(self, name: str, values: dict[str, Any]) -> str:
        """``parent.subject``, ``parent.body``, ``gp.subject`` or ``gp.body``, filled in."""
        text = self.templates[name].render(**values, trust=self.trust)
        return text.strip() + ("\n" if name.endswith("body") else "")


@dataclass(frozen=True, slots=True)
class LetterTemplates:
    """Every language's letter and the HTML page; ``pick`` chooses by the family's languages."""

    languages: dict[str, LetterLanguage]
    page: Template = field(repr=False)
    default: str = "en"

    def pick(self, codes: tuple[str, ...]) -> LetterLanguage:
        """The first of the family's languages the trust has a letter in, else English."""
        for code in codes:
            for candidate in (code, code.split("-")[0]):
                if candidate in self.languages:
                    return self.languages[candidate]
        return self.languages[self.default]


def load_letter_templates(root: Path) -> LetterTemplates:
    """Load ``root`` (mappings/letters); LetterTemplateError names the file and what is wrong."""
    env = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined,
                               keep_trailing_newline=True)
    html = SandboxedEnvironment(autoescape=True, undefined=StrictUndefined)
    languages = {}
    for path in sorted(root.glob("*.toml")):
        letter = _language(env, path)
        languages[letter.language] = letter
    if "en" not in languages:
        raise LetterTemplateError(str(root), "", "no en.toml: English is the letter every family "
                                  "can be sent when there is none in their language")
    page_path = root / "page.html"
    try:
        page = html.from_string(page_path.read_text(encoding="utf-8"))
        page.render(language="en", subject="s", paragraphs=[["a"]])
    except OSError as exc:
        raise LetterTemplateError(str(page_path), "", f"cannot read: {exc.strerror}") from exc
    except TemplateError as exc:
        raise LetterTemplateError(str(page_path), "", f"template error: {exc}") from exc
    return LetterTemplates(languages, page)


def _language(env: SandboxedEnvironment, path: Path) -> LetterLanguage:
    spec, _ = load_model(_LetterFile, path, LetterTemplateError)
    if spec.language != path.stem:
        raise LetterTemplateError(str(path), "language", f"says {spec.language!r}; the file name "
                                  "is the language code")
    templates = {}
    for part in ("parent", "gp"):
        letter: _Letter = getattr(spec, part)
        for name in ("subject", "body"):
            key = f"{part}.{name}"
            try:
                templates[key] = env.from_string(getattr(letter, name))
                for care in _CARES:
                    templates[key].render(**{**SAMPLE, "care": care}, trust=spec.trust.model_dump())
            except TemplateError as exc:
                raise LetterTemplateError(str(path), key, f"template error: {exc}") from exc
    if "default" not in spec.why:
        raise LetterTemplateError(str(path), "why.default", "missing: the words for a service "
                                  "with none of its own")
    return LetterLanguage(
        spec.language, spec.trust.model_dump(), frozenset(spec.recipients.codes),
        tuple(w.lower() for w in spec.recipients.words),
        {k.lower(): v for k, v in spec.why.items()},
        {k.lower(): v for k, v in spec.languages.items()}, templates)
