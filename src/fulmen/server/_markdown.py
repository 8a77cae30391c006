"""Markdown to safe HTML, on the server: the text of report blocks and markdown panels.

CommonMark with tables and strikethrough (markdown-it-py), ``$...$`` and ``$$...$$`` math
(mdit-py-plugins' dollarmath) written as MathML by latex2mathml, which Chromium, Firefox and Safari
draw natively: no math library runs in the page.

Nothing a user writes reaches the page as markup: raw HTML in the text is escaped (markdown-it's
``html`` option is off), links with a ``javascript:``/``vbscript:``/``file:`` URL are not links
(markdown-it's URL check), and the MathML is rebuilt from a list of MathML elements and attributes
(latex2mathml copies ``\\text{<script>...}`` through verbatim): any other element is dropped and
every text is escaped again.
"""

from __future__ import annotations

import functools
import html
from html.parser import HTMLParser
from typing import Any

# MathML Core's elements (and the few presentation ones latex2mathml writes beyond it)
MATH_ELEMENTS = frozenset(
    (  # noqa: SIM905 - a list of words
        "math mrow mi mn mo ms mtext mspace msub msup msubsup mfrac msqrt mroot mstyle merror "
        "mpadded mphantom munder mover munderover mmultiscripts mprescripts none mtable mtr mtd "
        "mlabeledtr semantics annotation menclose mfenced"
    ).split()
)
MATH_ATTRIBUTES = frozenset(
    (  # noqa: SIM905 - a list of words
        "xmlns display mathvariant mathsize mathcolor mathbackground displaystyle scriptlevel "
        "stretchy fence separator lspace rspace minsize maxsize movablelimits symmetric largeop "
        "accent accentunder linethickness columnalign rowalign columnspacing rowspacing "
        "columnlines rowlines frame framespacing equalrows equalcolumns width height depth "
        "voffset notation open close separators form encoding columnspan rowspan align"
    ).split()
)
VOID = frozenset({"mspace", "mprescripts", "none"})


class _MathSanitizer(HTMLParser):
    """Rebuilds MathML keeping only ``MATH_ELEMENTS`` with ``MATH_ATTRIBUTES``; all text escaped.
    The text inside a dropped element (a ``<script>`` in ``\\text{}``) stays, as plain text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in MATH_ELEMENTS:
            return
        kept = "".join(
            f' {name}="{html.escape(value or "", quote=True)}"'
            for name, value in attrs
            if name in MATH_ATTRIBUTES and not (value or "").lstrip().lower().startswith("java")
        )
        self.out.append(f"<{tag}{kept}>")
        if tag in VOID:
            self.out.append(f"</{tag}>")
        else:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in MATH_ELEMENTS:
            self.handle_starttag(tag, attrs)
            if tag not in VOID:
                self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.open:  # close what is open up to it (a stray end tag is dropped)
            while self.open:
                top = self.open.pop()
                self.out.append(f"</{top}>")
                if top == tag:
                    break

    def handle_data(self, data: str) -> None:
        self.out.append(html.escape(data, quote=False))

    def result(self) -> str:
        self.close()
        self.out.extend(f"</{tag}>" for tag in reversed(self.open))
        self.open.clear()
        return "".join(self.out)


def sanitize_math(markup: str) -> str:
    """``markup`` with only MathML elements and attributes left, every text escaped."""
    parser = _MathSanitizer()
    parser.feed(markup)
    return parser.result()


def math(latex: str, *, display: bool) -> str:
    """``latex`` as MathML (sanitized); the escaped source in a ``<code>`` if it does not parse."""
    import latex2mathml.converter

    try:
        markup = latex2mathml.converter.convert(latex, display="block" if display else "inline")
    except Exception:  # latex2mathml raises many types on bad input: show the source instead
        return f'<code class="math-error">{html.escape(latex)}</code>'
    return sanitize_math(markup)


@functools.cache
def _renderer() -> Any:
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.use(
        dollarmath_plugin,
        allow_space=True,
        double_inline=True,
        renderer=lambda text, options: math(text, display=bool(options.get("display_mode"))),
    )
    return md


@functools.lru_cache(maxsize=512)
def render(text: str) -> str:
    """``text`` (markdown with ``$math$``) as safe HTML (see the module docstring)."""
    return str(_renderer().render(text))
