"""Render a named template into a subject, an HTML part and a plain-text part.

Rendering is separate from sending (a transport sends what this returns), so it is tested
without a server and fails before anything is sent. One Jinja2 environment per process:

* templates live in ``saas_tasks/email/templates/<name>/{subject.txt,body.html,body.txt}``;
  a directory named by ``SAAS_TASKS_EMAIL_TEMPLATES_DIR`` is searched first, so a host app
  overrides one template, or only ``_layout/base.html`` to rebrand them all;
* autoescape is on for ``.html`` only, so a user's ``<script>`` in a name arrives as text in
  the HTML part and unchanged in the plain-text part;
* ``StrictUndefined``: a missing variable is an error naming it, never an empty string;
* the layout's ``<style>`` is inlined into ``style=""`` attributes by css-inline (Rust, fast),
  because Gmail and Outlook ignore much of a ``<style>`` block.

Bad input raises :class:`~saas_tasks.exceptions.InvalidPayload`: no retry, dead-lettered.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import css_inline
import jinja2

from saas_tasks.exceptions import InvalidPayload
from saas_tasks.settings import get_settings

SHIPPED = Path(__file__).parent / "templates"
PARTS = ("body.html", "body.txt", "subject.txt")  # body.html first: it defines a template
_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Rendered:
    """The three parts of one message, ready for :func:`saas_tasks.email.message.build`."""

    template: str
    subject: str
    html: str
    text: str


class Renderer:
    """A Jinja2 environment over the override directory (if any), then the shipped templates."""

    def __init__(self, override: Path | None = None, brand: str = "saas-tasks") -> None:
        self.search_path = [p for p in (override, SHIPPED) if p is not None]
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(p) for p in self.search_path]),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
            undefined=jinja2.StrictUndefined,
            auto_reload=False,  # templates are read once per process, not stat()ed per message
            keep_trailing_newline=False,
            trim_blocks=True,
        )
        self.env.globals["brand"] = brand
        self.inliner = css_inline.CSSInliner(load_remote_stylesheets=False, keep_at_rules=True)

    def names(self) -> list[str]:
        """Every template this renderer can find, overrides included."""
        found = {
            entry.name
            for root in self.search_path
            if root.is_dir()
            for entry in root.iterdir()
            if not entry.name.startswith("_") and (entry / "body.html").is_file()
        }
        return sorted(found)

    def check_name(self, template: str) -> None:
        """Raise :class:`InvalidPayload` unless ``template`` names a complete template."""
        if not _NAME.match(template):
            raise InvalidPayload(f"template: {template!r} is not a template name")
        for part in PARTS:
            try:
                self.env.get_template(f"{template}/{part}")
            except jinja2.TemplateNotFound:
                if part == "body.html":
                    raise InvalidPayload(
                        f"template: unknown email template {template!r} "
                        f"(known: {', '.join(self.names())})"
                    ) from None
                raise InvalidPayload(
                    f"template: email template {template!r} has no {part}"
                ) from None
            except jinja2.TemplateSyntaxError as exc:
                raise InvalidPayload(
                    f"template: {exc.filename or template}:{exc.lineno}: {exc.message}"
                ) from None

    def render(
        self, template: str, context: Mapping[str, Any], subject: str | None = None
    ) -> Rendered:
        """The subject (``subject`` overrides the template's), HTML and text of ``template``."""
        self.check_name(template)
        values = dict(context)
        try:
            html = self.env.get_template(f"{template}/body.html").render(values)
            text = self.env.get_template(f"{template}/body.txt").render(values)
            if subject is None:
                subject = self.env.get_template(f"{template}/subject.txt").render(values)
        except jinja2.UndefinedError as exc:
            raise InvalidPayload(
                f"context: template {template!r} needs a variable the context lacks: {exc.message}"
            ) from None
        return Rendered(
            template=template,
            subject=_one_line(subject),
            html=self.inliner.inline(html),
            text=text.strip() + "\n",
        )


def _one_line(subject: str) -> str:
    """Subjects are one line: a newline from a user's value must never start a header."""
    return _SPACE.sub(" ", subject).strip()


@functools.cache
def get_renderer() -> Renderer:
    """The renderer of this process, built on first use from the settings."""
    settings = get_settings()
    return Renderer(settings.email_templates_dir, settings.email_brand_name)


def render(template: str, context: Mapping[str, Any], subject: str | None = None) -> Rendered:
    """Render with the process-wide renderer (see :class:`Renderer`)."""
    return get_renderer().render(template, context, subject)
