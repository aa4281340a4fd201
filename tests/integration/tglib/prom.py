"""A strict parser for the Prometheus text exposition format 0.0.4, for checking /metrics.

    m = prom.parse(text)            # raises PromParseError(line_no, message)
    m.families["http_requests_total"].type      # "counter"
    m.value("http_requests_total", route="api", method="GET", status="200")
    m.sum("http_requests_total", route="api")   # over every series whose labels include these
    m.histogram("http_request_duration_seconds", route="api")  # {"buckets", "sum", "count"}

Strict means: everything the format document requires is checked, and so is everything it calls
undefined, because tollgate must never emit it. The rules, in the order a line meets them:

Lines
  - The text is UTF-8, lines end with "\\n" (no "\\r"), and a non-empty text ends with "\\n".
  - Empty (or blank) lines are accepted anywhere and ignored, as Prometheus does; they do not end
    a metric family.
  - Tokens are separated by blanks or tabs; leading and trailing blanks are accepted, as the
    reference Go parser does. A sample needs at least one blank between its name or label set and
    its value ("x{} 1", not "x{}1").
Comments
  - "# HELP <name> <text>": text may be empty; escapes are \\\\ and \\n only.
    "# TYPE <name> <type>": type is one of counter, gauge, histogram, summary, untyped
    (lowercase), with nothing after it. A HELP or TYPE line without a name, or a TYPE without a
    type, is an error (the Go parser silently ignores those; tollgate should never write one).
    Other "#" lines are comments.
Samples
  - Metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*; label names
    starting with "__" are reserved; a label name appears once per sample. Label values are
    double-quoted with the escapes \\\\, \\" and \\n only; a trailing comma before "}" is accepted.
  - Values are decimal floats, "+Inf", "-Inf" or "NaN" (not Go's other spellings such as "Inf",
    "nan" or hex floats). The optional timestamp is an integer number of milliseconds (int64).
Families
  - A family's lines are contiguous. TYPE and HELP appear at most once each, before the family's
    first sample. A sample without a TYPE forms an untyped family of its own name.
  - A histogram x owns x_bucket, x_sum and x_count, a summary x owns x_sum and x_count; no other
    family may use a name a family owns.
  - No two samples have the same name and label set (label order does not matter).
  - Counters are neither negative nor NaN.
  - "le" is a label of histogram buckets only. Every x_bucket has an le that is a number (not NaN);
    per label set (without le), buckets come in increasing le order, their counts are whole
    numbers that never decrease, the last bucket is le="+Inf" and equals x_count, and x_sum and
    x_count are both present. x_sum and x_count carry no le.
  - A summary's quantile samples carry a "quantile" label in [0, 1], in increasing order per label
    set; x_sum and x_count (a whole number) are present for every label set.

Histogram and summary errors found when a family ends name the line of the sample concerned: the
first sample of the label set for a missing x_sum or x_count, the last bucket for a missing +Inf
bucket, the x_count line when it differs from the +Inf bucket.
"""

import math
import re
from collections import namedtuple

__all__ = ["Family", "Metrics", "PromParseError", "Sample", "parse"]

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_TIMESTAMP = re.compile(r"-?[0-9]+\Z")
_BLANKS = " \t"
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
_OWNED = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


class PromParseError(ValueError):
    """The text is not valid exposition format; line_no is 1-based."""

    def __init__(self, line_no, message):
        super().__init__(f"line {line_no}: {message}")
        self.line_no = line_no
        self.message = message


Family = namedtuple("Family", "type help")
Family.__doc__ = "A metric family: its type (untyped when no TYPE line) and HELP text (or None)."

Sample = namedtuple("Sample", "name labels value timestamp line_no")
Sample.__doc__ = "One sample line: labels is a dict, timestamp an int (ms) or None."


def _key(labels):
    return frozenset(labels.items())


def _parse_value(s):
    """Returns the float for a sample value or label number, or None if s is not one."""
    if s in ("+Inf", "-Inf", "NaN"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    if _FLOAT.match(s):
        return float(s)
    return None


def _fmt_labels(labels):
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


class _Family:
    def __init__(self, name, line_no):
        self.name = name
        self.type = None  # set by TYPE, or "untyped" once a sample arrives first
        self.help = None
        self.first_line = line_no
        self.samples = []
        self.sets = {}  # histogram/summary: label set without le/quantile -> _Set


class _Set:
    """What one label set of a histogram or summary has shown so far."""

    def __init__(self, line_no):
        self.first_line = line_no
        self.buckets = []  # (le or quantile, value, line_no)
        self.sum = None  # (value, line_no)
        self.count = None


class _Parser:
    def __init__(self):
        self.families = {}  # family name -> _Family, in order of appearance
        self.owner = {}  # sample name -> family name
        self.seen = {}  # (sample name, label key) -> line_no
        self.samples = []
        self.current = None
        self.line_no = 0

    def fail(self, message, line_no=None):
        raise PromParseError(self.line_no if line_no is None else line_no, message)

    def run(self, text):
        if isinstance(text, (bytes, bytearray)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as e:
                raise PromParseError(bytes(text)[: e.start].count(b"\n") + 1,
                                     "invalid UTF-8") from None
        if text and not text.endswith("\n"):
            raise PromParseError(text.count("\n") + 1, "the text does not end with a newline")
        for self.line_no, line in enumerate(text.split("\n")[:-1], 1):
            if "\r" in line:
                self.fail("carriage return in line (lines end with \\n only)")
            s = line.strip(_BLANKS)
            if not s:
                continue
            if s[0] == "#":
                self.comment(s)
            else:
                self.sample(s)
        if self.current is not None:
            self.close(self.current)
        return Metrics(self)

    # --- families -------------------------------------------------------------------------------

    def enter(self, fam):
        """Makes fam the family of the current line; its lines must be contiguous."""
        if fam is self.current:
            return
        if fam.samples or fam.type is not None or fam.help is not None:
            self.fail(f"lines of family {fam.name} are not contiguous (it began at line "
                      f"{fam.first_line})")
        if self.current is not None:
            self.close(self.current)
        self.current = fam

    def family_for_decl(self, name):
        fam = self.families.get(name)
        if fam is None:
            owner = self.owner.get(name)
            if owner is not None:
                self.fail(f"{name} belongs to the {self.families[owner].type} family {owner}")
            fam = self.families[name] = _Family(name, self.line_no)
            self.owner[name] = name
        self.enter(fam)
        return fam

    def comment(self, s):
        rest = s[1:].lstrip(_BLANKS)
        keyword = rest[:4]
        if keyword not in ("HELP", "TYPE") or (len(rest) > 4 and rest[4] not in _BLANKS):
            return  # an ordinary comment
        rest = rest[4:].lstrip(_BLANKS)
        m = _METRIC_NAME.match(rest)
        if not m:
            self.fail(f"{keyword} line without a valid metric name")
        name, rest = m.group(), rest[m.end():]
        if rest and rest[0] not in _BLANKS:
            self.fail(f"invalid metric name in {keyword} line")
        rest = rest.lstrip(_BLANKS)
        fam = self.family_for_decl(name)
        if keyword == "HELP":
            if fam.help is not None:
                self.fail(f"second HELP line for {name}")
            if fam.samples:
                self.fail(f"HELP line for {name} after its samples")
            fam.help = self.unescape(rest, quote=False)
            return
        if fam.type is not None and not fam.samples:
            self.fail(f"second TYPE line for {name}")
        if fam.samples:
            self.fail(f"TYPE line for {name} after its samples")
        if rest not in TYPES:
            self.fail(f"unknown metric type {rest!r} for {name}" if rest else
                      f"TYPE line for {name} without a type")
        for suffix in _OWNED.get(rest, ()):
            other = self.owner.get(name + suffix)
            if other is not None:
                self.fail(f"{rest} {name} owns {name}{suffix}, already used by family {other}")
            self.owner[name + suffix] = name
        fam.type = rest

    def unescape(self, s, quote):
        out = []
        i = 0
        while i < len(s):
            c = s[i]
            if c == "\\":
                nxt = s[i + 1:i + 2]
                if nxt == "\\":
                    out.append("\\")
                elif nxt == "n":
                    out.append("\n")
                elif nxt == '"' and quote:
                    out.append('"')
                else:
                    self.fail(f"invalid escape sequence \\{nxt}" if nxt else "dangling backslash")
                i += 2
            else:
                out.append(c)
                i += 1
        return "".join(out)

    # --- samples --------------------------------------------------------------------------------

    def labels(self, s, i):
        """Parses the label set starting at s[i] == "{"; returns (labels, index after "}")."""
        labels = {}
        i += 1
        while True:
            while i < len(s) and s[i] in _BLANKS:
                i += 1
            if i < len(s) and s[i] == "}":
                return labels, i + 1
            m = _LABEL_NAME.match(s, i)
            if not m:
                self.fail("invalid label name" if i < len(s) else "unterminated label set")
            name = m.group()
            if name.startswith("__"):
                self.fail(f"label name {name} is reserved")
            if name in labels:
                self.fail(f"duplicate label name {name}")
            i = m.end()
            while i < len(s) and s[i] in _BLANKS:
                i += 1
            if s[i:i + 1] != "=":
                self.fail(f"expected '=' after label name {name}")
            i += 1
            while i < len(s) and s[i] in _BLANKS:
                i += 1
            if s[i:i + 1] != '"':
                self.fail(f"expected '\"' to open the value of label {name}")
            j = i + 1
            while j < len(s) and s[j] != '"':
                j += 2 if s[j] == "\\" else 1
            if j >= len(s):
                self.fail(f"unterminated value for label {name}")
            labels[name] = self.unescape(s[i + 1:j], quote=True)
            i = j + 1
            while i < len(s) and s[i] in _BLANKS:
                i += 1
            if s[i:i + 1] == ",":
                i += 1
            elif i == len(s):
                self.fail("unterminated label set")
            elif s[i] != "}":
                self.fail(f"expected ',' or '}}' after the value of label {name}")

    def sample(self, s):
        m = _METRIC_NAME.match(s)
        if not m:
            self.fail("invalid metric name")
        name, i = m.group(), m.end()
        labels = {}
        j = i
        while j < len(s) and s[j] in _BLANKS:
            j += 1
        if s[j:j + 1] == "{":
            labels, i = self.labels(s, j)
        elif i < len(s) and s[i] not in _BLANKS:
            self.fail(f"invalid character {s[i]!r} after metric name {name}")
        rest = s[i:]
        if not rest:
            self.fail(f"sample {name} without a value")
        if rest[0] not in _BLANKS:
            self.fail(f"expected a blank before the value of {name}")
        fields = rest.split()
        if any(c not in _BLANKS for c in rest if c.isspace()):
            self.fail(f"only blanks and tabs separate fields (sample {name})")
        value = _parse_value(fields[0])
        if value is None:
            self.fail(f"invalid value {fields[0]!r} for {name}")
        timestamp = None
        if len(fields) > 1:
            if not _TIMESTAMP.match(fields[1]) or not -2**63 <= int(fields[1]) < 2**63:
                self.fail(f"invalid timestamp {fields[1]!r} for {name}")
            timestamp = int(fields[1])
        if len(fields) > 2:
            self.fail(f"unexpected text after the timestamp of {name}")

        fam_name = self.owner.get(name)
        if fam_name is None:
            fam = self.families[name] = _Family(name, self.line_no)
            self.owner[name] = name
        else:
            fam = self.families[fam_name]
        self.enter(fam)
        if fam.type is None:
            fam.type = "untyped"
        key = (name, _key(labels))
        if key in self.seen:
            self.fail(f"duplicate series {name}{_fmt_labels(labels)} (first at line "
                      f"{self.seen[key]})")
        self.seen[key] = self.line_no
        self.check_sample(fam, name, labels, value)
        smp = Sample(name, labels, value, timestamp, self.line_no)
        fam.samples.append(smp)
        self.samples.append(smp)

    def check_sample(self, fam, name, labels, value):
        suffix = name[len(fam.name):]
        if fam.type == "histogram":
            self.check_histogram(fam, suffix, labels, value)
            return
        if "le" in labels:
            self.fail(f"label le on {name}, which is not a histogram bucket")
        if fam.type == "counter" and not value >= 0:
            self.fail(f"counter {name} is {value} (counters are never negative or NaN)")
        if fam.type == "summary":
            self.check_summary(fam, suffix, labels, value)

    def set_for(self, fam, labels, drop):
        key = _key({k: v for k, v in labels.items() if k != drop})
        st = fam.sets.get(key)
        if st is None:
            st = fam.sets[key] = _Set(self.line_no)
        return st

    def check_count(self, name, value):
        if not (value >= 0 and value == math.floor(value)):
            self.fail(f"{name} is {value}, not a count (a whole number >= 0)")

    def check_histogram(self, fam, suffix, labels, value):
        name = fam.name + suffix
        if suffix == "":
            self.fail(f"histogram {name} has a sample without _bucket, _sum or _count")
        if suffix != "_bucket":
            if "le" in labels:
                self.fail(f"label le on {name}, which is not a histogram bucket")
            st = self.set_for(fam, labels, "le")
            if suffix == "_count":
                self.check_count(name, value)
                st.count = (value, self.line_no)
            else:
                st.sum = (value, self.line_no)
            return
        if "le" not in labels:
            self.fail(f"histogram bucket {name} without an le label")
        le = _parse_value(labels["le"])
        if le is None or math.isnan(le):
            self.fail(f"le={labels['le']!r} on {name} is not a number")
        self.check_count(name, value)
        st = self.set_for(fam, labels, "le")
        if st.buckets:
            prev_le, prev_value, _ = st.buckets[-1]
            if le <= prev_le:
                self.fail(f"bucket le={labels['le']!r} of {name} after le={prev_le} (buckets "
                          f"come in increasing le order)")
            if value < prev_value:
                self.fail(f"bucket le={labels['le']!r} of {name} counts {value}, fewer than "
                          f"{prev_value} in the bucket before (buckets are cumulative)")
        st.buckets.append((le, value, self.line_no))

    def check_summary(self, fam, suffix, labels, value):
        name = fam.name + suffix
        st = self.set_for(fam, labels, "quantile")
        if suffix != "":
            if "quantile" in labels:
                self.fail(f"label quantile on {name}")
            if suffix == "_count":
                self.check_count(name, value)
                st.count = (value, self.line_no)
            else:
                st.sum = (value, self.line_no)
            return
        if "quantile" not in labels:
            self.fail(f"summary {name} sample without a quantile label")
        q = _parse_value(labels["quantile"])
        if q is None or not 0 <= q <= 1:
            self.fail(f"quantile={labels['quantile']!r} on {name} is not a number in [0, 1]")
        if st.buckets and q <= st.buckets[-1][0]:
            self.fail(f"quantile={labels['quantile']!r} of {name} after "
                      f"quantile={st.buckets[-1][0]} (quantiles come in increasing order)")
        st.buckets.append((q, value, self.line_no))

    def close(self, fam):
        """Checks what can only be known once a histogram or summary family has ended."""
        if fam.type not in ("histogram", "summary"):
            return
        for key, st in fam.sets.items():
            where = _fmt_labels(dict(key))
            if fam.type == "histogram":
                if not st.buckets:
                    self.fail(f"histogram {fam.name}{where} has no buckets", st.first_line)
                last_le, last_value, last_line = st.buckets[-1]
                if last_le != math.inf:
                    self.fail(f"histogram {fam.name}{where} has no le=\"+Inf\" bucket", last_line)
            if st.count is None:
                self.fail(f"{fam.type} {fam.name}{where} has no {fam.name}_count", st.first_line)
            if st.sum is None:
                self.fail(f"{fam.type} {fam.name}{where} has no {fam.name}_sum", st.first_line)
            if fam.type == "histogram" and st.count[0] != last_value:
                self.fail(f"{fam.name}_count{where} is {st.count[0]} but its le=\"+Inf\" bucket "
                          f"is {last_value}", st.count[1])


class Metrics:
    """A parsed exposition. families maps each family name to Family(type, help); samples lists
    every Sample in text order. Lookups take sample names (x_bucket, x_count, ...) and raise
    KeyError for a name that no family in the text declares or uses."""

    def __init__(self, parser):
        self.families = {n: Family(f.type or "untyped", f.help) for n, f in parser.families.items()}
        self.samples = list(parser.samples)
        self._names = set(parser.owner)
        self._index = {(s.name, _key(s.labels)): s for s in self.samples}
        self._hists = {}
        for fam in parser.families.values():
            if fam.type != "histogram":
                continue
            for key, st in fam.sets.items():
                self._hists[(fam.name, key)] = {
                    "buckets": [(le, v) for le, v, _ in st.buckets],
                    "sum": st.sum[0],
                    "count": st.count[0],
                }

    def _known(self, name):
        if name not in self._names:
            raise KeyError(f"no metric named {name} in the exposition")

    def value(self, name, **labels):
        """The value of the series with exactly this name and label set."""
        s = self._index.get((name, _key(labels)))
        if s is None:
            raise KeyError(f"no series {name}{_fmt_labels(labels)}")
        return s.value

    def series(self, name):
        """[(labels, value)] of every series with this sample name, in text order."""
        self._known(name)
        return [(dict(s.labels), s.value) for s in self.samples if s.name == name]

    def sum(self, name, **subset):
        """Sum of the series of this name whose labels include subset (0 when none match)."""
        self._known(name)
        return sum(s.value for s in self.samples
                   if s.name == name and all(s.labels.get(k) == v for k, v in subset.items()))

    def histogram(self, name, **labels):
        """{"buckets": [(le, cumulative count)], "sum": x, "count": n} of the histogram family
        name for exactly this label set (le excluded); le is a float, math.inf for +Inf."""
        h = self._hists.get((name, _key(labels)))
        if h is None:
            raise KeyError(f"no histogram {name}{_fmt_labels(labels)}")
        return {"buckets": list(h["buckets"]), "sum": h["sum"], "count": h["count"]}


def parse(text):
    """Parses an exposition (str, or bytes in UTF-8) into Metrics; raises PromParseError."""
    return _Parser().run(text)
