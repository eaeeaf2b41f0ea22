"""Tokenization for the report metrics, the way pycocoevalcap tokenizes.

pycocoevalcap runs Stanford CoreNLP 3.4.1's PTBTokenizer (`-preserveLines -lowerCase`) in a Java
subprocess and then drops the tokens in its PUNCTUATIONS list. Starting a JVM and writing a temp
file into site-packages for every call is slow and fragile, so `ptb_tokenize` re-implements the
tokenizer's behaviour on the text that medical reports contain (words, numbers with . , / - :,
hyphenated words, clitics, brackets, quotes, abbreviations); tests/score check it token for token
against the jar. Quirks kept on purpose because the reference numbers include them:
- lowercasing happens after bracket escaping, so "(" becomes "-lrb-", which is NOT in the
  (upper-case) PUNCTUATIONS list and therefore stays as a token;
- a period between two letters without a space ("clear.there") does not split the word.
"""

from __future__ import annotations

import re

# pycocoevalcap.tokenizer.ptbtokenizer.PUNCTUATIONS (compared after lowercasing the tokens, so the
# upper-case bracket escapes in that list never match; see module doc).
PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                          ".", "?", "!", ",", ":", "-", "--", "...", ";"])

_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}
# Abbreviations CoreNLP keeps with their period (a subset of its list that occurs in reports).
_ABBREV = {"dr", "mr", "mrs", "ms", "prof", "vs", "etc", "approx", "fig", "st", "jr", "sr",
           "inc", "ltd", "co", "corp", "dept", "univ", "jan", "feb", "mar", "apr", "jun", "jul",
           "aug", "sep", "sept", "oct", "nov", "dec"}
_TOKEN = re.compile(r"""
    (?P<ellipsis>\.\.\.)
  | (?P<dashes>--+)
  | (?P<quote2>")
  | (?P<ticks>``|'')
  | (?P<acronym>(?:[A-Za-z]\.){2,})
  | (?P<number>\d+(?:[.,/:\-]\d+)*(?![^\W_]))
  | (?P<word>[^\W_](?:[\w]|[-/&.'](?=[^\W_]))*)
  | (?P<other>\S)
""", re.VERBOSE)
_CLITIC = re.compile(r"(?i)^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")
_SPLIT_WORDS = {"cannot": ("can", "not"), "gonna": ("gon", "na"), "gotta": ("got", "ta"),
                "wanna": ("wan", "na")}


def _raw_tokens(line: str) -> list[str]:
    tokens: list[str] = []
    prev_end = 0
    for match in _TOKEN.finditer(line):
        kind, text = match.lastgroup, match.group()
        spaced = match.start() == 0 or line[match.start() - 1].isspace()
        if kind == "quote2":
            # Opening quote at the start, after space or an opening bracket; closing otherwise.
            opening = spaced or (tokens and tokens[-1] in ("-LRB-", "-LSB-", "-LCB-", "``")
                                 and match.start() == prev_end)
            tokens.append("``" if opening else "''")
        elif kind == "other" and text == "'":
            tokens.append("`" if spaced else "'")
        elif kind == "other" and text in _BRACKETS:
            tokens.append(_BRACKETS[text])
        elif kind == "word":
            tokens.extend(_split_word(text))
        else:
            tokens.append(text)
        prev_end = match.end()
    return tokens


def _split_word(word: str) -> list[str]:
    lower = word.lower()
    if lower in _SPLIT_WORDS:
        a, b = _SPLIT_WORDS[lower]
        return [word[:len(a)], word[len(a):]]
    out = []
    m = _CLITIC.match(word)
    if m and m.group(1):
        out = [m.group(1), m.group(2)]
    else:
        out = [word]
    return out


def _merge_abbrev(tokens: list[str]) -> list[str]:
    """An abbreviation keeps its period when more tokens follow on the line."""
    merged: list[str] = []
    for i, tok in enumerate(tokens):
        if tok == "." and merged and merged[-1].lower() in _ABBREV and i + 1 < len(tokens):
            merged[-1] += "."
        else:
            merged.append(tok)
    return merged


def ptb_tokenize(text: str) -> str:
    """One caption -> pycocoevalcap's tokenized string (lowercased, punctuation tokens removed,
    joined by single spaces). Newlines are spaces, as pycocoevalcap replaces them."""
    line = text.replace("\n", " ")
    tokens = _merge_abbrev(_raw_tokens(line))
    return " ".join(t for t in (tok.lower() for tok in tokens) if t not in PUNCTUATIONS)


def whitespace_tokenize(text: str) -> str:
    """Lowercase and split on whitespace only: no punctuation handling (state it when reporting)."""
    return " ".join(text.lower().split())


def tokenizer(name: str):
    if name == "ptb":
        return ptb_tokenize
    if name == "whitespace":
        return whitespace_tokenize
    raise ValueError(f"unknown tokenizer {name!r}; choose ptb or whitespace")
