"""Plain English Wikipedia text for perplexity and needle tests, derived from the article dump excerpt
that gensim ships in its wheel (``gensim/test/test_data/enwiki-latest-pages-articles1.xml-…-shortened.bz2``).

The derived file ``data/enwiki.txt`` is committed (text: CC BY-SA 4.0, see ``data/README.md``);
regenerate it with::

    pip download --no-deps gensim==4.4.0 -d /tmp/gensim
    python -m rotorjax.eval.wikitext /tmp/gensim/gensim-4.4.0-*.whl

Markup is stripped with a few regular expressions (templates, tables, references, links, emphasis);
only paragraphs of at least 200 characters of prose are kept, in article order.
"""

from __future__ import annotations

import bz2
import pathlib
import re
import sys
import xml.etree.ElementTree as ET
import zipfile

DATA = pathlib.Path(__file__).with_name("data") / "enwiki.txt"
MEMBER = re.compile(r"gensim/test/test_data/enwiki-latest-pages-articles1\.xml-.*-shortened\.bz2")


def _strip_nested(text: str, open_: str, close: str) -> str:
    out, depth, i = [], 0, 0
    while i < len(text):
        if text.startswith(open_, i):
            depth, i = depth + 1, i + len(open_)
        elif depth and text.startswith(close, i):
            depth, i = depth - 1, i + len(close)
        else:
            if not depth:
                out.append(text[i])
            i += 1
    return "".join(out)


def clean(wikitext: str, min_chars: int = 200) -> list[str]:
    """Prose paragraphs (at least ``min_chars`` long) of one article's wiki markup."""
    t = re.sub(r"<!--.*?-->", "", wikitext, flags=re.S)
    t = re.sub(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref>", "", t, flags=re.S)
    t = _strip_nested(_strip_nested(t, "{{", "}}"), "{|", "|}")
    t = re.sub(r"\[\[(?:File|Image|Category|[a-z\-]{2,12}):[^\[\]]*(?:\[\[[^\]]*\]\][^\[\]]*)*\]\]", "", t)
    t = re.sub(r"\[\[(?:[^\]|]*\|)?([^\]]*)\]\]", r"\1", t)
    t = re.sub(r"\[https?://\S+ ([^\]]*)\]|\[https?://\S+\]", r"\1", t)
    t = re.sub(r"<[^>]+>|'{2,}", "", t)
    paras = []
    for p in re.split(r"\n\s*\n", t):
        p = " ".join(p.split())
        if len(p) >= min_chars and not p.startswith(("=", "*", "#", "|", ":", ";")):
            paras.append(p)
    return paras


def build(wheel: str, max_chars: int = 400_000) -> str:
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if MEMBER.fullmatch(n)]
        if not names:
            raise ValueError(f"{wheel} does not contain the gensim enwiki test dump")
        xml = bz2.decompress(zf.read(names[0]))
    paras, total = [], 0
    for el in ET.fromstring(xml).iter():
        if el.tag.endswith("}text") and el.text and not el.text.lstrip().lower().startswith("#redirect"):
            for p in clean(el.text):
                paras.append(p)
                total += len(p) + 2
            if total >= max_chars:
                break
    return "\n\n".join(paras)


def load() -> str:
    """The committed derived text."""
    return DATA.read_text(encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m rotorjax.eval.wikitext GENSIM_WHEEL")
    DATA.write_text(build(sys.argv[1]) + "\n", encoding="utf-8")
    print(f"wrote {DATA} ({DATA.stat().st_size} bytes)")
