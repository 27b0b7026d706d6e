"""Numbers a page quotes, bound to the snippet code that computes them.

A snippet states each number its page takes from it:

    claim("11.7%", dead_high)          # the page shows 11.7%; the code must compute 0.1165 ... 0.1175
    claim("1,182,720", n_params)       # an integer: exact
    claim("49–55%", acc)               # a band written on the page: the value must lie in it
    claim("over 95%", inlier_share)    # a bound written on the page
    claim("0.2 px", err, tol=0.05)     # an explicit tolerance, in the units of the text

Two checks bind the page and the code both ways:
- `claim()` fails the snippet when the value is outside what the text allows (a point number allows
  half a unit of its last shown digit, so the text is the value as rounded);
- `make check` reads every `claim("...")` call from the snippet's source and fails when no page that
  includes the snippet shows that text any more.
The text is plain Markdown on the page: nothing in the prose is a placeholder.
"""
from __future__ import annotations

import ast
import functools
import inspect
import json
import math
import os
import re
from dataclasses import dataclass

LOG_ENV = "KB_CLAIMS_LOG"  # when set, every claim checked at run time is appended to this file (JSON lines)
SURVEY_ENV = "KB_CLAIMS_SURVEY"  # when set, a claim outside its text is logged, not raised (vault/spread.py)

_NUMBER = r"""
    (?P<sign{i}>[−-])?
    (?:
        10\^\{{?(?P<pow{i}>[−-]?\d+)\}}?                                 # a bare power of ten: 10^{{-6}}
      | (?P<int{i}>\d{{1,3}}(?:(?:,|\{{,\}})\d{{3}})+|\d+)                   # 1,182,720 or TeX's 73{{,}}856
        (?P<frac{i}>\.\d+)?
        (?:
            \s*(?:\\times|×|\\cdot|·)\s*10\^?\{{?(?P<exp{i}>[−-]?\d+)\}}?  # 4.5\times10^{{-5}}, 4.5 × 10^-5
          | [eE](?P<eexp{i}>[−+-]?\d+)                                  # 4.5e-5
        )?
        (?P<mult{i}>[kMBG](?![A-Za-z]))?                                # 138M, 25k (but not 3.2 MB)
    )
    (?P<pct{i}>\s?\\?%)?                                                 # 11.7% or TeX's 11.7\%
"""
NUMBER_RE = re.compile(_NUMBER.format(i=""), re.X)
# Two numbers joined by a dash, "to" or "and" ("between a and b"), each maybe in its own $...$.
RANGE_RE = re.compile(_NUMBER.format(i="") + r"\s*\$?\s*(?:–|—|-|\bto\b|\band\b)\s*\$?\s*" + _NUMBER.format(i="2"),
                      re.X)
# A bound written on the page, just before the number: "over 95%", "by more than 0.1", "< 0.01",
# "$\le 10^{-3}$". Inclusive ones are marked.
UPPER = {"<": False, "≤": True, r"\le": True, r"\leq": True, r"\lt": False, "under": False, "below": False,
         "less than": False, "fewer than": False, "at most": True, "up to": True, "no more than": True}
LOWER = {">": False, "≥": True, r"\ge": True, r"\geq": True, r"\gt": False, "over": False, "above": False,
         "more than": False, "at least": True, "no less than": True, "beyond": False}
MULTIPLIERS = {"k": 1e3, "M": 1e6, "B": 1e9, "G": 1e9}


class ClaimError(AssertionError):
    pass


@dataclass(frozen=True)
class Allowed:
    """The interval a claim's text allows for the computed value."""
    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def outside(self) -> float:
        """A value this interval rejects (what a mutation test puts in place of the code's value)."""
        if math.isfinite(self.high):
            return self.high + max(1.0, abs(self.high))
        return self.low - max(1.0, abs(self.low))

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:.6g}, {self.high:.6g}{')' if self.high_open else ']'}"


@dataclass(frozen=True)
class Shown:
    """One number as the page shows it: its digits, half a unit of the last digit, and its scale."""
    digits: float
    half: float
    scale: float
    scaled: bool  # whether the text itself gave a %, a power of ten or a multiplier

    @classmethod
    def of(cls, m: re.Match, i: str = "") -> "Shown":
        power = m.group(f"pow{i}")
        frac = m.group(f"frac{i}") or ""
        digits = 1.0 if power else float(m.group(f"int{i}").replace("{,}", "").replace(",", "") + frac)
        if m.group(f"sign{i}"):
            digits = -digits
        exp = power or m.group(f"exp{i}") or m.group(f"eexp{i}")
        scale = 10.0 ** int(exp.replace("−", "-")) if exp else 1.0
        scale *= MULTIPLIERS.get(m.group(f"mult{i}") or "", 1.0)
        if m.group(f"pct{i}"):
            scale /= 100
        scaled = bool(exp or m.group(f"mult{i}") or m.group(f"pct{i}"))
        return cls(digits, 0.5 * 10.0 ** -len(frac.lstrip(".")), scale, scaled)


def _bound(before: str) -> tuple[dict, str] | None:
    """The bound word just before the number ("over", "by more than", "<", "\\le", ...), and its table."""
    words = re.sub(r"(?:\$|\\\(|\s)+$", "", before).lower()
    for table in (UPPER, LOWER):
        for word in sorted(table, key=len, reverse=True):
            at = len(words) - len(word)
            if words.endswith(word) and not (word[0].isalpha() and words[at - 1:at].isalpha()):
                return table, word
    return None


def allowed(text: str, tol: float | None = None, rel: float | None = None) -> Allowed:
    """What the text on the page allows the computed value to be."""
    numbers = list(NUMBER_RE.finditer(text))
    rng = RANGE_RE.search(text)
    if rng and len(numbers) == 2:
        a, b = Shown.of(rng), Shown.of(rng, "2")
        a_scale = a.scale if a.scaled else b.scale  # "49–55%": the first takes the second's percent sign
        ends = sorted([(a.digits * a_scale, a.half * a_scale), (b.digits * b.scale, b.half * b.scale)])
        return Allowed(ends[0][0] - ends[0][1], ends[1][0] + ends[1][1])
    if len(numbers) != 1:
        raise ClaimError(f"claim text {text!r} must hold exactly one number, range or bound")
    shown = Shown.of(numbers[0])
    value, half = shown.digits * shown.scale, shown.half * shown.scale
    before = text[:numbers[0].start()]
    if re.search(r"(?:within|±|\\pm)(?:\$|\s)*$", before.lower()):  # "within 2%", "±0.5": |value| <= 2%
        return Allowed(-abs(value), abs(value))
    bound = _bound(before)
    if bound is not None:
        table, word = bound
        open_ = not table[word]
        return Allowed(-math.inf, value, high_open=open_) if table is UPPER else \
            Allowed(value, math.inf, low_open=open_)
    width = tol if tol is not None else abs(value) * rel if rel is not None else abs(half)
    return Allowed(value - width, value + width)


def claim(text: str, value, *, tol: float | None = None, rel: float | None = None):
    """Assert that `value` is what the page's `text` says, and return it.

    `text` is exactly what the page shows; a percentage means a fraction (11.7% is 0.117). `tol` and
    `rel` widen a point number's default tolerance (half a unit of its last shown digit).
    """
    number = float(value.item() if hasattr(value, "item") else value)  # tensors, NumPy scalars, numbers
    interval = allowed(text, tol=tol, rel=rel)
    ok = math.isfinite(number) and number in interval
    caller = inspect.currentframe().f_back
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"file": caller.f_code.co_filename, "line": caller.f_lineno, "text": text,
                                "value": number, "allows": str(interval), "ok": ok}) + "\n")
    if not ok and not os.environ.get(SURVEY_ENV):
        raise ClaimError(f"claim {text!r} (line {caller.f_lineno}): the code computes {number:.6g}, "
                         f"but the text allows {interval}")
    return value


# --- reading claims and assertions from a snippet's source, for make check ---------------------

@dataclass(frozen=True)
class StaticClaim:
    text: str
    line: int


@dataclass(frozen=True)
class SnippetProof:
    """What a snippet file proves: its claim() calls and the lines of its real assertions."""
    claims: tuple[StaticClaim, ...]
    proof_lines: tuple[int, ...]  # lines of claims, asserts of a non-constant, and assert_* calls
    problems: tuple[tuple[int, str], ...]


def _is_claim_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    return (isinstance(f, ast.Name) and f.id == "claim") or (isinstance(f, ast.Attribute) and f.attr == "claim")


def _is_assert_call(node: ast.AST) -> bool:
    """np.testing.assert_allclose(...), torch.testing.assert_close(...), self.assertEqual(...)."""
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
    return name.startswith("assert")


# A pure function of the text, kept: the checker's tests run it on many copies of the same vault.
@functools.lru_cache(maxsize=512)
def read_proof(source: str) -> SnippetProof:
    tree = ast.parse(source)
    claims, lines, problems = [], [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            if isinstance(node.test, ast.Constant):
                problems.append((node.lineno, "an assert of a constant proves nothing"))
            else:
                lines.append(node.lineno)
        elif _is_claim_call(node):
            lines.append(node.lineno)
            first = node.args[0] if node.args else None
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                problems.append((node.lineno, "claim()'s first argument must be the text the page shows, "
                                              "as a string literal"))
                continue
            try:
                allowed(first.value)
            except ClaimError as exc:
                problems.append((node.lineno, str(exc)))
                continue
            claims.append(StaticClaim(first.value, node.lineno))
        elif _is_assert_call(node):
            lines.append(node.lineno)
    return SnippetProof(tuple(claims), tuple(sorted(lines)), tuple(problems))


@functools.lru_cache(maxsize=256)  # shows() asks once per claim, many claims a page
def _prose(markdown: str) -> str:
    """The page text a reader sees: fenced code (the snippet inclusions) blanked out, inline code kept."""
    from .source import mask_fenced  # here, so that snippets importing claim() skip Markdown's import
    return mask_fenced(markdown)


def shows(markdown: str, text: str) -> tuple[int, int] | None:
    """Where the page's prose shows `text` as a whole number (not inside a longer one): its span."""
    prose = _prose(markdown)
    # A line break or a run of spaces in the page matches a space in the text: prose is wrapped.
    pattern = r"\s+".join(map(re.escape, text.split()))
    for m in re.finditer(pattern, prose):
        before = prose[m.start() - 1] if m.start() else " "
        after = prose[m.end():m.end() + 2]
        if before.isdigit() or (before in ".," and m.start() > 1 and prose[m.start() - 2].isdigit()):
            continue
        if after[:1].isdigit() or (after[:1] in ".," and after[1:2].isdigit()):
            continue
        return m.span()
    return None


# --- which page shows which part of which snippet ----------------------------------------------

INCLUDE_RE = re.compile(r"""^[ \t>]*-{1,}8<-{1,}[ \t]+(["'])(?P<spec>[^"']+)\1[ \t]*$""", re.M)
PART_MARK_RE = re.compile(r"-{1,}8<-{1,}[ \t]*\[[ \t]*(start|end)[ \t]*:[ \t]*([a-z][-_0-9a-z]*)[ \t]*\]")


@dataclass(frozen=True)
class Inclusion:
    """One `--8<-- "file.py:part"` line of a page."""
    page: str      # docs/... path of the page
    line: int      # its line in the page
    offset: int    # its offset in the page's body
    file: str      # snippets-relative file name
    part: str      # the named part, or "" for the whole file


def inclusions(body: str, page: str, line_of) -> list[Inclusion]:
    found = []
    for m in INCLUDE_RE.finditer(body):
        name, _, part = m.group("spec").strip().partition(":")
        found.append(Inclusion(page, line_of(m.start()), m.start(), name, part))
    return found


def part_lines(source: str, part: str) -> range | None:
    """The file lines between a part's start and end markers (the whole file for part "")."""
    lines = source.splitlines()
    if not part:
        return range(1, len(lines) + 1)
    start = end = None
    for n, line in enumerate(lines, 1):
        for kind, name in PART_MARK_RE.findall(line):
            if name == part and kind == "start" and start is None:
                start = n
            elif name == part and kind == "end" and start is not None and end is None:
                end = n
    return range(start, end + 1) if start is not None and end is not None else None
