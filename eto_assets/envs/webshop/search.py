"""The site's search: BM25 (``bm25s``) over the same product text WebShop indexes with Lucene.

WebShop indexes, per product, the title, description, first feature bullet and the option list
("color: black, white, and size: m, l"), lower-cased, and serves the top 50 hits of a Lucene BM25
search (Pyserini: English stop words, Porter stemming, k1=0.9, b=0.4). This mirrors that with
``bm25s`` and PyStemmer's Porter stemmer; documents with no query term are not hits, as in Lucene,
and ties keep catalog order. Results are cached per query since agents repeat searches a lot.
"""

from __future__ import annotations

import functools
import re

import bm25s
import numpy as np
import Stemmer
from bm25s.tokenization import Tokenizer

from eto_assets.envs.webshop.catalog import Product

SEARCH_RETURN_N = 50
K1, B = 0.9, 0.4  # Pyserini's BM25 defaults
_WORD = re.compile(r"\w+(?:\.\w+)*")
_POSSESSIVE = re.compile(r"'s\b")


def _split(text: str) -> list[str]:
    """Lucene-like words: keeps "6.76" whole, drops the possessive "'s"."""
    return _WORD.findall(_POSSESSIVE.sub("", text))


def document_text(product: Product) -> str:
    """What WebShop's index holds for a product."""
    option_text = ", and ".join(f"{name}: {', '.join(values)}" for name, values in product.options.items())
    first_bullet = product.bullet_points[0] if product.bullet_points else ""
    return " ".join([product.title, product.description, first_bullet, option_text]).lower()


class SearchEngine:
    """BM25 over a catalog; ``search(query)`` returns up to 50 asins, best first."""

    def __init__(self, products: list[Product], cache_size: int = 8192) -> None:
        self._asins = [p.asin for p in products]
        stemmer = Stemmer.Stemmer("porter")
        self._tokenizer = Tokenizer(lower=True, splitter=_split, stopwords="en", stemmer=stemmer)
        corpus_ids = self._tokenizer.tokenize(
            [document_text(p) for p in products], update_vocab=True, return_as="ids", show_progress=False
        )
        self._bm25 = bm25s.BM25(k1=K1, b=B, method="lucene")
        self._bm25.index(corpus_ids, show_progress=False)
        self._unknown = self._tokenizer.get_vocab_dict().get("")
        self._cached = functools.lru_cache(maxsize=cache_size)(self._search)

    def __len__(self) -> int:
        return len(self._asins)

    def search(self, query: str, k: int = SEARCH_RETURN_N) -> list[str]:
        return list(self._cached(query.lower().strip(), k))

    def _search(self, query: str, k: int) -> tuple[str, ...]:
        ids = self._tokenizer.tokenize([query], update_vocab=False, return_as="ids", show_progress=False)[0]
        ids = [i for i in ids if i != self._unknown]
        if not ids:
            return ()
        scores = self._bm25.get_scores(ids)
        hits = np.flatnonzero(scores > 0)
        if hits.size > k:
            # keep the k best, including every document tied with the k-th score, then order them
            cut = np.partition(scores[hits], hits.size - k)[hits.size - k]
            hits = hits[scores[hits] >= cut]
        order = np.lexsort((hits, -scores[hits]))[:k]
        return tuple(self._asins[i] for i in hits[order])
