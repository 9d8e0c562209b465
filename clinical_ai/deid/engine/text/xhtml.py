"""FHIR Narrative XHTML: scrub the text, keep the markup.

The div is cut into markup and text without re-serialising it, so tags, attribute order, quoting and
namespace declarations come back byte for byte. The text nodes are joined into one string (a line break
where a block element separates them, nothing across inline ones such as ``<b>``) so that NER sees
"<b>Margaret</b> Okafor" as one name; a replacement that spans nodes lands in the first of them. Attribute
values that can carry an identifier (``href="mailto:..."``, ``title``, ``alt``...) and comments are scrubbed
as strings of their own; ``data:`` URIs (embedded images, which may be photographs) are emptied. Input that is not well-formed XML (or declares entities) is not parsed: the caller
scrubs it as plain text.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # only to check well-formedness; DTDs are refused first
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, unescape

from clinical_ai.deid.engine.text.clinical_terms import word_set

_MARKUP = re.compile(
    r"<!--(?P<comment>.*?)-->"
    r"|<!\[CDATA\[(?P<cdata>.*?)\]\]>"
    r"|<\?.*?\?>"
    r"|(?P<tag></?(?P<name>[A-Za-z_][\w:.\-]*)(?:\s+[^\s=/>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*\s*/?>)",
    re.DOTALL,
)
_ATTRIBUTE = re.compile(r"(?P<name>[^\s=/>]+)\s*=\s*(?P<quote>[\"'])(?P<value>.*?)(?P=quote)", re.DOTALL)
EMPTY_DATA_URI = "data:,"
_CHAR_REF = re.compile(r"&#(x[0-9A-Fa-f]+|\d+);")

BLOCK_ELEMENTS = word_set(
    "p div br td th tr li ul ol table thead tbody tfoot caption h1 h2 h3 h4 h5 h6 hr pre blockquote dl dt dd "
    "img col colgroup"
)
# Attributes whose values are structure, not content; every other attribute value is scrubbed.
STRUCTURAL_ATTRIBUTES = word_set(
    "xmlns id class style colspan rowspan span width height border align valign lang xml:lang dir type "
    "scope headers cellpadding cellspacing frame rules char charoff start value"
)


def _xml_unescape(raw: str) -> str:
    text = _CHAR_REF.sub(
        lambda m: chr(int(m.group(1)[1:], 16) if m.group(1)[0] == "x" else int(m.group(1))), raw
    )
    return unescape(text, {"&quot;": '"', "&apos;": "'"})


@dataclass
class _TextNode:
    raw_start: int  # position of the node in the markup
    raw_end: int
    text: str  # unescaped
    joined_start: int  # position in the joined text
    cdata: bool = False


@dataclass
class _ValueSlot:
    raw_start: int
    raw_end: int
    text: str
    quote: str  # '"' or "'" for attributes, "" for comments
    opaque: bool = False  # a data: URI (an embedded image may be a photograph): emptied, not analysed


@dataclass
class XhtmlDocument:
    markup: str
    joined: str = ""
    nodes: list[_TextNode] = field(default_factory=list)
    values: list[_ValueSlot] = field(default_factory=list)

    @property
    def value_texts(self) -> list[str]:
        return ["" if slot.opaque else slot.text for slot in self.values]

    def rebuild(self, edits: list[tuple[int, int, str]], scrubbed_values: list[str]) -> str:
        """The markup with ``edits`` (start, end, replacement on :attr:`joined`) applied to the text nodes
        and each scrubbable value replaced by its scrubbed text."""
        node_text = [node.text for node in self.nodes]
        for start, end, replacement in sorted(edits, reverse=True):
            overlapping = [
                index
                for index, node in enumerate(self.nodes)
                if node.joined_start < end and start < node.joined_start + len(node.text)
            ]
            for index in reversed(overlapping):
                node = self.nodes[index]
                low = max(start, node.joined_start) - node.joined_start
                high = min(end, node.joined_start + len(node.text)) - node.joined_start
                insert = replacement if index == overlapping[0] else ""
                node_text[index] = node_text[index][:low] + insert + node_text[index][high:]
        pieces: list[tuple[int, int, str]] = []
        for node, new in zip(self.nodes, node_text, strict=True):
            if new != node.text:
                raw = new.replace("]]>", "]]&gt;") if node.cdata else escape(new)
                pieces.append((node.raw_start, node.raw_end, raw))
        for slot, value in zip(self.values, scrubbed_values, strict=True):
            if slot.opaque:
                pieces.append((slot.raw_start, slot.raw_end, EMPTY_DATA_URI))
            elif value != slot.text:
                if slot.quote:
                    raw = escape(value, {slot.quote: "&quot;" if slot.quote == '"' else "&apos;"})
                else:
                    raw = value.replace("--", "- -")
                pieces.append((slot.raw_start, slot.raw_end, raw))
        out: list[str] = []
        cursor = 0
        for start, end, raw in sorted(pieces):
            out.append(self.markup[cursor:start])
            out.append(raw)
            cursor = end
        out.append(self.markup[cursor:])
        return "".join(out)


def is_well_formed(markup: str) -> bool:
    if "<!DOCTYPE" in markup or "<!ENTITY" in markup:
        return False
    try:
        ET.fromstring(markup)  # noqa: S314 - DTDs refused above, so no entity expansion
    except ET.ParseError:
        return False
    return True


def parse_xhtml(markup: str) -> XhtmlDocument | None:
    """Cut ``markup`` into text nodes and scrubbable values; None if it is not well-formed XML."""
    if not is_well_formed(markup):
        return None
    document = XhtmlDocument(markup)
    joined: list[str] = []
    length = 0
    pending_break = False
    cursor = 0

    def add_text(raw_start: int, raw_end: int, text: str, *, cdata: bool = False) -> None:
        nonlocal length, pending_break
        if not text:
            return
        if pending_break and length:
            joined.append("\n")
            length += 1
        pending_break = False
        document.nodes.append(_TextNode(raw_start, raw_end, text, length, cdata))
        joined.append(text)
        length += len(text)

    for match in _MARKUP.finditer(markup):
        if match.start() > cursor:
            add_text(cursor, match.start(), _xml_unescape(markup[cursor : match.start()]))
        cursor = match.end()
        if match.group("comment") is not None:
            document.values.append(
                _ValueSlot(match.start("comment"), match.end("comment"), match.group("comment"), "")
            )
        elif match.group("cdata") is not None:
            add_text(match.start("cdata"), match.end("cdata"), match.group("cdata"), cdata=True)
        elif match.group("tag") is not None:
            name = match.group("name").split(":")[-1].lower()
            if name in BLOCK_ELEMENTS:
                pending_break = True
            for attribute in _ATTRIBUTE.finditer(match.group("tag")):
                attribute_name = attribute.group("name").lower()
                if attribute_name in STRUCTURAL_ATTRIBUTES or attribute_name.startswith("xmlns"):
                    continue
                offset = match.start("tag")
                value = _xml_unescape(attribute.group("value"))
                document.values.append(
                    _ValueSlot(
                        offset + attribute.start("value"),
                        offset + attribute.end("value"),
                        value,
                        attribute.group("quote"),
                        opaque=value.lstrip().lower().startswith("data:"),
                    )
                )
    if cursor < len(markup):
        add_text(cursor, len(markup), _xml_unescape(markup[cursor:]))
    document.joined = "".join(joined)
    return document
