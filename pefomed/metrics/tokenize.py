"""Tokenization for the report metrics, the way pycocoevalcap tokenizes.

pycocoevalcap runs Stanford CoreNLP 3.4.1's PTBTokenizer (`-preserveLines -lowerCase`) in a Java
subprocess and then drops the tokens in its PUNCTUATIONS list. Starting a JVM and writing a temp
file into site-packages for every call is slow and fragile, so `python_ptb_tokenize` re-implements
the tokenizer's behaviour on the text medical reports contain (words, numbers with units, decimals,
ranges, hyphenated words, de-identification blanks `___`/`XXXX`, clitics, brackets, quotes,
abbreviations). tests/score/test_ptb_parity.py checks it token for token against the jar on
tests/score/data/ptb_parity_corpus.jsonl.

Where the jar's lexer has rules we do not reproduce (any non-ASCII character: Unicode dashes,
curly quotes, the ellipsis character, fractions, degree, micro and plus-minus signs; URLs, e-mail
addresses, SGML and HTML entities; and a few odd shapes such as `v2.0`, `5.5-6.0`, `a...b`, `'90s`),
`needs_jar` names the class and `ptb_tokenize_many` sends those strings to the jar itself (one JVM
for all of them), so the tokens stay the jar's. Without Java or pycocoevalcap those strings get the
Python tokens and the caller records that they are approximate.

Quirks kept on purpose because the reference numbers include them:
- lowercasing happens after bracket escaping, so "(" becomes "-lrb-", which is NOT in the
  (upper-case) PUNCTUATIONS list and therefore stays as a token;
- a period between two letters without a space ("clear.there") does not split the word;
- a decimal number glued to a unit splits ("3.5cm" -> "3.5 cm") but an integer does not ("10mm");
- "No." / "Fig." / "ca." keep their period only before a number ("No. 5"), titles and "etc." always.
One deliberate difference from pycocoevalcap: a carriage return is a space here (pycocoevalcap only
replaces "\n", and the jar then starts a new line at "\r", shifting every later caption).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

# pycocoevalcap.tokenizer.ptbtokenizer.PUNCTUATIONS (compared after lowercasing the tokens, so the
# upper-case bracket escapes in that list never match; see module doc).
PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                          ".", "?", "!", ",", ":", "-", "--", "...", ";"])

_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}
# CoreNLP 3.4.1 keeps the period of these wherever they stand (probed against the jar; the titles,
# months, company words and "etc." / "al." of its lexer that occur in reports).
_ABBREV = {"dr", "mr", "mrs", "ms", "prof", "vs", "etc", "st", "jr", "sr", "inc", "ltd", "co", "corp",
           "dept", "univ", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov",
           "dec", "cf", "al", "gen", "gov", "sen", "rep", "rev", "hon", "lt", "col", "capt", "sgt", "mt",
           "ft", "ave", "blvd", "rd", "est", "bros", "assn", "ph", "messrs", "mme", "mlle", "sq", "mo"}
# ... and these only when a number follows ("No. 5", "Fig. 2"); "approx." is in neither list.
_ABBREV_BEFORE_NUMBER = {"no", "nos", "ca", "fig", "figs", "pp", "op"}
_TOKEN = re.compile(r"""
    (?P<ellipsis>\.\.\.)
  | (?P<dashes>--)
  | (?P<quote2>")
  | (?P<ticks>``|'')
  | (?P<blank>_+)
  | (?P<clitic>'(?i:s|re|ve|ll|d|m)(?![^\W_]))
  | (?P<acronym>(?:[A-Za-z]\.){2,})
  | (?P<numunit>(?:\d+|(?<!\S)(?=\.\d))(?:[.,:]\d+)+(?=[A-Za-z]))
  | (?P<number>(?:\d+|(?<!\S)(?=\.\d))(?:[.,/:\-]\d+)*(?![^\W_]|-[^\W_]))
  | (?P<word>[^\W_](?:[^\W_]|[-/&.'](?=[^\W_]))*)
  | (?P<other>\S)
""", re.VERBOSE)
_CLITIC = re.compile(r"(?i)^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")
_SPLIT_WORDS = {"cannot": ("can", "not"), "gonna": ("gon", "na"), "gotta": ("got", "ta"),
                "wanna": ("wan", "na")}
# Input classes where the jar's lexer does something the Python path does not reproduce.
_JAR_CLASSES = (
    ("non-ascii", re.compile(r"[^\x00-\x7f]")),
    ("control character", re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")),
    ("url, e-mail, sgml or symbol", re.compile(r"[&<>@#*$~^|\\{}]|://|www\.")),
    ("underscore inside a word", re.compile(r"[^\W_]_|_[^\W_']|_'")),
    ("period run", re.compile(r"\.{4,}|(?<!\.)\.\.(?!\.)|\.\.\.(?=\S)")),
    ("dash run", re.compile(r"-{3,}")),
    ("signed number", re.compile(r"(?<!\S)[-+]\d")),
    ("letter-number-period", re.compile(r"[A-Za-z]\d*\.\d|\d\.[A-Za-z]")),
    ("range with decimals", re.compile(r"\d-\d+\.\d|\d[-/]\d+[A-Za-z]|[.,]\d+-")),
    ("comma or colon before digit", re.compile(r"(?<!\d)[,:]\d|[A-Za-z]\d+,\d")),
    ("plus sign before digit", re.compile(r"\+\d")),
    ("fraction or slash range", re.compile(r"\d\s+\d+/\d|\d/\d+-\d")),
    ("glued clitic", re.compile(r"(?i)n't[a-z0-9-]|'s[a-z0-9]")),
    ("slash after a word or decimal", re.compile(r"[A-Za-z]\d*/\d|\d\.\d+/\d")),
    ("abbreviation ending the line", re.compile(r"(?i)(?<![A-Za-z.])(?:[a-z]|no|nos|ca|figs?|pp|op)\.[\s\"')\]]*$")),
    ("quote or bang inside a word", re.compile(r"[!?](?=[!?\w])|(?<![^\s(\[])'(?:n'|\d)")),
    ("single-letter p.", re.compile(r"(?<![^\s(\[])[pP]\.(?!\w)")),
    ("period before punctuation", re.compile(r"[A-Za-z0-9]\.[,;:!?]")),
    ("emoticon", re.compile(r"[:;=][-o*']?[()\[\]DPdpO](?![A-Za-z])")),
)


# A period between letters is exact on "word.word" and on acronyms ("e.g.", "U.S."), not on mixes
# such as "45-degreei.e.", "s/pa.m." or "i.e.ca." (checked per whitespace-separated chunk).
_LETTER_DOT_LETTER = re.compile(r"[A-Za-z]\.[A-Za-z]")
_SAFE_DOTTED_CHUNK = re.compile(r"""^[(\["]*(?:[A-Za-z]+\.[A-Za-z]+|(?:[A-Za-z]\.){2,})[.,;:)\]"]*$""")


# Substrings without one of which a class's pattern cannot match (None: always search). Checking
# them first (a C substring scan) skips most of the regex scans on ordinary report text; the
# patterns themselves still decide, so the classes are unchanged.
_REQUIRED: dict[str, tuple[str, ...] | None] = {
    "underscore inside a word": ("_",),
    "period run": ("..",),
    "dash run": ("---",),
    "signed number": ("-", "+"),
    "range with decimals": ("-", "/"),
    "comma or colon before digit": (",", ":"),
    "plus sign before digit": ("+",),
    "fraction or slash range": ("/",),
    "glued clitic": ("'",),
    "slash after a word or decimal": ("/",),
    "quote or bang inside a word": ("!", "?", "'"),
    "single-letter p.": ("p.", "P."),
    "period before punctuation": (".,", ".;", ".:", ".!", ".?"),
    "emoticon": (":", ";", "="),
}
# "abbreviation ending the line" needs a period right before the trailing run of spaces, quotes
# and closing brackets (the characters of its `[\s"')\]]*$`).
_TRAILING = " \"')]"


def _ends_with_period(line: str) -> bool:
    i = len(line)
    while i and (line[i - 1] in _TRAILING or line[i - 1].isspace()):
        i -= 1
    return i > 0 and line[i - 1] == "."


def needs_jar(text: str) -> str | None:
    """The name of the first input class in `text` that only the jar tokenizes exactly, or None."""
    line = text.replace("\n", " ").replace("\r", " ")
    for name, pattern in _JAR_CLASSES:
        required = _REQUIRED.get(name)
        if required is not None and not any(part in line for part in required):
            continue
        if name == "abbreviation ending the line" and not _ends_with_period(line):
            continue
        if pattern.search(line):
            return name
    if _LETTER_DOT_LETTER.search(line):
        for chunk in line.split():
            if _LETTER_DOT_LETTER.search(chunk) and not _SAFE_DOTTED_CHUNK.match(chunk):
                return "glued abbreviation"
    return None


def _raw_tokens(line: str) -> list[str]:
    tokens: list[str] = []
    prev_end = 0
    for match in _TOKEN.finditer(line):
        kind, text = match.lastgroup, match.group()
        if kind == "word":
            # most tokens: only a word with an apostrophe or one of _SPLIT_WORDS splits
            if "'" in text or (5 <= len(text) <= 6 and text.lower() in _SPLIT_WORDS):
                tokens.extend(_split_word(text))
            else:
                tokens.append(text)
        elif kind == "quote2":
            # Opening quote at the start, after space or an opening bracket; closing otherwise.
            start = match.start()
            spaced = start == 0 or line[start - 1].isspace()
            opening = spaced or (tokens and tokens[-1] in ("-LRB-", "-LSB-", "-LCB-", "``")
                                 and start == prev_end)
            tokens.append("``" if opening else "''")
        elif kind == "other" and text == "'":
            start = match.start()
            tokens.append("`" if start == 0 or line[start - 1].isspace() else "'")
        elif kind == "other" and text in _BRACKETS:
            tokens.append(_BRACKETS[text])
        else:
            tokens.append(text)
        prev_end = match.end()
    return tokens


def _split_word(word: str) -> list[str]:
    lower = word.lower()
    if lower in _SPLIT_WORDS:
        a, b = _SPLIT_WORDS[lower]
        return [word[:len(a)], word[len(a):]]
    m = _CLITIC.match(word)
    if m and m.group(1):
        return [m.group(1), m.group(2)]
    return [word]


def _merge_abbrev(tokens: list[str]) -> list[str]:
    """An abbreviation keeps its period: titles, months, "etc." and single letters always; "No.",
    "Fig.", "ca." only before a number."""
    merged: list[str] = []
    for i, tok in enumerate(tokens):
        prev = merged[-1].lower() if tok == "." and merged else ""
        if prev and not prev.endswith("."):
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
            if (prev in _ABBREV or (len(prev) == 1 and prev.isalpha())
                    or (prev in _ABBREV_BEFORE_NUMBER and nxt[:1].isdigit())):
                merged[-1] += "."
                continue
        merged.append(tok)
    return merged


def _finish(tokens: list[str]) -> str:
    return " ".join(t for t in (tok.lower() for tok in tokens) if t not in PUNCTUATIONS)


def python_ptb_tokenize(text: str) -> str:
    """The Python re-implementation alone (exact on strings where `needs_jar` is None)."""
    line = text.replace("\n", " ").replace("\r", " ")
    return _finish(_merge_abbrev(_raw_tokens(line)))


def _jar_path() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        return None
    jar = Path(list(spec.submodule_search_locations)[0]) / "tokenizer" / "stanford-corenlp-3.4.1.jar"
    return jar if jar.is_file() else None


def jar_unavailable_reason() -> str | None:
    if _jar_path() is None:
        return "pycocoevalcap (which ships stanford-corenlp-3.4.1.jar) is not installed"
    if shutil.which("java") is None:
        return "Java is not installed"
    return None


def jar_ptb_tokenize(texts: list[str]) -> list[str]:
    """pycocoevalcap's PTBTokenizer itself on `texts` (one JVM): the same command, the same
    newline handling (plus carriage returns, see module doc), the same punctuation removal."""
    reason = jar_unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    if not texts:
        return []
    lines = [t.replace("\n", " ").replace("\r", " ") for t in texts]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "captions.txt"
        src.write_bytes("\n".join(lines).encode("utf-8"))
        proc = subprocess.run(["java", "-cp", str(_jar_path()), "edu.stanford.nlp.process.PTBTokenizer",
                               "-preserveLines", "-lowerCase", str(src)],
                              capture_output=True, check=False)
    out = proc.stdout.decode("utf-8").split("\n")
    if proc.returncode != 0 or len(out) < len(lines):
        raise RuntimeError(f"the PTB tokenizer jar failed (exit {proc.returncode}): "
                           f"{proc.stderr.decode('utf-8', 'replace')[-300:]}")
    return [" ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS) for line in out[:len(lines)]]


def ptb_tokenize_many(texts: list[str], progress: bool = False) -> tuple[list[str], dict]:
    """Tokenize many captions: the Python path where it is exact, the jar (one JVM) for the
    strings in a class only the jar handles. Returns the tokens and which tokenizer produced how
    many of them (for METRICS.json settings). `progress`: show a progress bar."""
    out = [""] * len(texts)
    classes: dict[str, int] = {}
    to_jar: list[int] = []
    items = enumerate(texts)
    if progress:
        from pefomed.console import track

        items = track(items, "report tokenization (PTB)", total=len(texts))
    for i, text in items:
        cls = needs_jar(text)
        if cls is None:
            out[i] = python_ptb_tokenize(text)
        else:
            classes[cls] = classes.get(cls, 0) + 1
            to_jar.append(i)
    info: dict = {"python": len(texts) - len(to_jar), "jar": 0}
    if to_jar:
        info["jar_classes"] = classes
        reason = jar_unavailable_reason()
        if reason is None:
            try:
                for i, tokens in zip(to_jar, jar_ptb_tokenize([texts[i] for i in to_jar])):
                    out[i] = tokens
                info["jar"] = len(to_jar)
            except RuntimeError as err:
                reason = str(err)
        if reason is not None:
            for i in to_jar:
                out[i] = python_ptb_tokenize(texts[i])
            info["python"] = len(texts)
            info["approximate"] = len(to_jar)
            info["jar_unavailable"] = reason
    return out, info


def ptb_tokenize(text: str) -> str:
    """One caption -> pycocoevalcap's tokenized string (lowercased, punctuation tokens removed,
    joined by single spaces). Use ptb_tokenize_many for many captions (one JVM at most)."""
    return ptb_tokenize_many([text])[0][0]


def whitespace_tokenize(text: str) -> str:
    """Lowercase and split on whitespace only: no punctuation handling (state it when reporting)."""
    return " ".join(text.lower().split())


def tokenizer(name: str):
    if name == "ptb":
        return ptb_tokenize
    if name == "whitespace":
        return whitespace_tokenize
    raise ValueError(f"unknown tokenizer {name!r}; choose ptb or whitespace")
