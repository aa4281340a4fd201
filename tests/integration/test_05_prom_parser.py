"""The strict Prometheus text-format parser the admin tests read /metrics with (tglib/prom.py).

These tests need no tollgate binary: they feed the parser hand-written expositions, valid ones to
show what it returns and invalid ones to show that each strictness rule rejects its case at the
right line.
"""

import math
import textwrap

import pytest

from tglib.prom import PromParseError, parse


def text(s):
    """Dedented exposition text; the first line of the literal is line 1."""
    return textwrap.dedent(s).lstrip("\n")


def test_counter_with_labels():
    m = parse(text("""
        # HELP http_requests_total Requests answered, by route, method and status.
        # TYPE http_requests_total counter
        http_requests_total{route="api",method="GET",status="200"} 7
        http_requests_total{route="api",method="POST",status="201"} 2
        http_requests_total{route="web",method="GET",status="200"} 5
        http_requests_total{route="web",method="GET",status="404"} 1
        """))
    fam = m.families["http_requests_total"]
    assert fam.type == "counter"
    assert fam.help == "Requests answered, by route, method and status."
    assert m.value("http_requests_total", route="api", method="GET", status="200") == 7
    # exact lookup: a subset of the labels is not a series
    with pytest.raises(KeyError):
        m.value("http_requests_total", route="api", method="GET")
    assert m.sum("http_requests_total") == 15
    assert m.sum("http_requests_total", route="web") == 6
    assert m.sum("http_requests_total", method="GET", status="200") == 12
    assert m.sum("http_requests_total", route="nope") == 0
    assert m.series("http_requests_total")[1] == (
        {"route": "api", "method": "POST", "status": "201"}, 2)
    with pytest.raises(KeyError):
        m.sum("http_request_total")  # a typo is an error, not a silent 0
    with pytest.raises(KeyError):
        m.series("nope")


def test_gauge_and_number_forms():
    m = parse(text("""
        # TYPE tollgate_active_connections gauge
        tollgate_active_connections 3
        # TYPE temperature gauge
        temperature{where="a"} -1.5
        temperature{where="b"} 1e3
        temperature{where="c"} .5E-2
        temperature{where="d"} +12.
        temperature{where="e"} 0
        """))
    assert m.families["tollgate_active_connections"].type == "gauge"
    assert m.families["tollgate_active_connections"].help is None
    assert m.value("tollgate_active_connections") == 3
    assert [v for _, v in m.series("temperature")] == [-1.5, 1000.0, 0.005, 12.0, 0.0]


def test_histogram():
    m = parse(text("""
        # HELP http_request_duration_seconds Time to answer.
        # TYPE http_request_duration_seconds histogram
        http_request_duration_seconds_bucket{route="api",le="0.001"} 1
        http_request_duration_seconds_bucket{route="api",le="0.01"} 4
        http_request_duration_seconds_bucket{route="api",le="1"} 4
        http_request_duration_seconds_bucket{route="api",le="+Inf"} 5
        http_request_duration_seconds_sum{route="api"} 2.25
        http_request_duration_seconds_count{route="api"} 5
        http_request_duration_seconds_bucket{route="web",le="0.001"} 0
        http_request_duration_seconds_bucket{route="web",le="0.01"} 0
        http_request_duration_seconds_bucket{route="web",le="1"} 0
        http_request_duration_seconds_bucket{route="web",le="+Inf"} 0
        http_request_duration_seconds_sum{route="web"} 0
        http_request_duration_seconds_count{route="web"} 0
        """))
    assert m.families["http_request_duration_seconds"].type == "histogram"
    h = m.histogram("http_request_duration_seconds", route="api")
    assert h == {"buckets": [(0.001, 1), (0.01, 4), (1.0, 4), (math.inf, 5)], "sum": 2.25,
                 "count": 5}
    assert m.sum("http_request_duration_seconds_count") == 5
    assert m.value("http_request_duration_seconds_bucket", route="api", le="0.01") == 4
    with pytest.raises(KeyError):
        m.histogram("http_request_duration_seconds", route="nope")
    with pytest.raises(KeyError):
        m.histogram("http_request_duration_seconds_bucket", route="api")


def test_summary():
    m = parse(text("""
        # TYPE rpc_seconds summary
        rpc_seconds{quantile="0.5"} 0.1
        rpc_seconds{quantile="0.99"} 0.7
        rpc_seconds_sum 12.5
        rpc_seconds_count 40
        """))
    assert m.families["rpc_seconds"].type == "summary"
    assert m.value("rpc_seconds", quantile="0.99") == 0.7
    assert m.value("rpc_seconds_count") == 40


def test_escapes():
    m = parse(text(r"""
        # HELP weird A \\ backslash, a \n newline and "quotes" kept as they are.
        # TYPE weird gauge
        weird{path="C:\\dir",say="a \"quoted\" word",lines="one\ntwo"} 1
        """))
    assert m.families["weird"].help == 'A \\ backslash, a \n newline and "quotes" kept as they are.'
    (labels, value), = m.series("weird")
    assert labels == {"path": "C:\\dir", "say": 'a "quoted" word', "lines": "one\ntwo"}
    assert m.value("weird", path="C:\\dir", say='a "quoted" word', lines="one\ntwo") == 1


def test_special_values():
    m = parse(text("""
        # TYPE g gauge
        g{v="pos"} +Inf
        g{v="neg"} -Inf
        g{v="nan"} NaN
        # TYPE c counter
        c +Inf
        """))
    assert m.value("g", v="pos") == math.inf
    assert m.value("g", v="neg") == -math.inf
    assert math.isnan(m.value("g", v="nan"))
    assert m.value("c") == math.inf


def test_timestamps():
    m = parse(text("""
        # TYPE up gauge
        up{job="a"} 1 1712345678901
        up{job="b"} 0 -5
        up{job="c"} 1
        """))
    assert [s.timestamp for s in m.samples] == [1712345678901, -5, None]
    assert [s.line_no for s in m.samples] == [2, 3, 4]


def test_lenient_where_the_format_is():
    """Untyped samples, comments, blank lines (even inside a family), tabs and extra blanks,
    a trailing comma, an empty label set, labels in any order, and bytes input."""
    m = parse(text("""
        # a comment
        #HELP spaced    help after blanks
        #  TYPE   spaced	counter

        spaced {a="1", b="2",} 	4  \t
        spaced{} 1
        #
        no_type_here 2
        other:metric{x="y"} 3
        """).encode())
    assert m.families["spaced"] == ("counter", "help after blanks")
    assert m.families["no_type_here"].type == "untyped"
    assert m.value("spaced", b="2", a="1") == 4
    assert m.value("spaced") == 1
    assert m.value("other:metric", x="y") == 3


def test_empty_text():
    m = parse("")
    assert m.families == {} and m.samples == []
    assert parse("\n\n# only a comment\n").families == {}


def test_declared_family_without_samples():
    m = parse("# HELP idle Nothing yet.\n# TYPE idle counter\n")
    assert m.families["idle"] == ("counter", "Nothing yet.")
    assert m.series("idle") == [] and m.sum("idle") == 0


HIST_OK = [
    '# TYPE h histogram',
    'h_bucket{le="1"} 1',
    'h_bucket{le="+Inf"} 2',
    'h_sum 3',
    'h_count 2',
]


def lines(*ls):
    return "\n".join(ls) + "\n"


REJECTED = {
    # the text as a whole
    "no final newline": ("# TYPE a counter\na 1", 2, "does not end with a newline"),
    "carriage return": ("# TYPE a counter\r\na 1\r\n", 1, "carriage return"),
    "invalid utf-8": (b"# TYPE a counter\n# HELP a caf\xe9\na 1\n", 2, "invalid UTF-8"),
    # HELP and TYPE
    "second TYPE": (lines("# TYPE a counter", "# TYPE a counter", "a 1"), 2, "second TYPE"),
    "TYPE after samples": (lines("# HELP a x", "a 1", "# TYPE a counter"), 3,
                           "TYPE line for a after its samples"),
    "TYPE after untyped sample": (lines("a 1", "# TYPE a gauge"), 2, "after its samples"),
    "second HELP": (lines("# HELP a x", "# TYPE a gauge", "# HELP a y", "a 1"), 3,
                    "second HELP"),
    "HELP after samples": (lines("# TYPE a gauge", "a 1", "# HELP a x"), 3,
                           "HELP line for a after its samples"),
    "unknown type": (lines("# TYPE a countr", "a 1"), 1, "unknown metric type"),
    "uppercase type": (lines("# TYPE a COUNTER", "a 1"), 1, "unknown metric type"),
    "text after type": (lines("# TYPE a counter x", "a 1"), 1, "unknown metric type"),
    "TYPE without type": (lines("# TYPE a", "a 1"), 1, "without a type"),
    "HELP without name": (lines("# HELP", "a 1"), 1, "without a valid metric name"),
    "TYPE bad name": (lines("# TYPE 1a counter"), 1, "without a valid metric name"),
    "HELP bad escape": (lines(r"# HELP a tab\there", "a 1"), 1, "invalid escape"),
    "HELP quote escape": (lines(r'# HELP a say \"hi\"', "a 1"), 1, "invalid escape"),
    "HELP dangling backslash": (lines("# HELP a end\\", "a 1"), 1, "dangling backslash"),
    # contiguity and names
    "family split by another": (lines("# TYPE a counter", "a 1", "# TYPE b gauge", "b 1",
                                      'a{x="y"} 2'), 5, "not contiguous"),
    "HELP split from samples": (lines("# HELP a x", "# TYPE b gauge", "b 1", "a 2"), 4,
                                "not contiguous"),
    "untyped family split": (lines("a 1", "b 1", 'a{x="1"} 2'), 3, "not contiguous"),
    "histogram name taken": (lines("h_count 1", "# TYPE h histogram"), 2,
                             "owns h_count, already used by family h_count"),
    "declaring an owned name": (lines(*HIST_OK, "# TYPE h_sum gauge"), 6,
                                "belongs to the histogram family h"),
    # sample lines
    "bad metric name": (lines("1a 1"), 1, "invalid metric name"),
    "bad char in name": (lines("a-b 1"), 1, "invalid character '-'"),
    "bad label name": (lines('a{1x="y"} 1'), 1, "invalid label name"),
    "reserved label": (lines('a{__name__="y"} 1'), 1, "reserved"),
    "duplicate label": (lines('a{x="1",x="2"} 1'), 1, "duplicate label name x"),
    "label bad escape": (lines(r'a{x="\t"} 1'), 1, "invalid escape"),
    "unterminated value": (lines('a{x="y} 1'), 1, "unterminated value"),
    "unquoted value": (lines("a{x=y} 1"), 1, "expected '\"'"),
    "missing comma": (lines('a{x="1" y="2"} 1'), 1, "expected ','"),
    "unterminated labels": (lines('a{x="1"'), 1, "unterminated label set"),
    "no value": (lines("# TYPE a gauge", "a"), 2, "without a value"),
    "no blank before value": (lines('a{x="1"}1'), 1, "expected a blank"),
    "bad value": (lines("a 1,5"), 1, "invalid value"),
    "Inf without sign": (lines("a Inf"), 1, "invalid value"),
    "lowercase nan": (lines("a nan"), 1, "invalid value"),
    "hex value": (lines("a 0x10"), 1, "invalid value"),
    "underscore value": (lines("a 1_000"), 1, "invalid value"),
    "float timestamp": (lines("a 1 1.5"), 1, "invalid timestamp"),
    "huge timestamp": (lines("a 1 9223372036854775808"), 1, "invalid timestamp"),
    "text after timestamp": (lines("a 1 2 3"), 1, "after the timestamp"),
    "duplicate series": (lines("# TYPE a counter", 'a{x="1",y="2"} 1', 'a{x="2",y="2"} 1',
                               'a{y="2",x="1"} 3'), 4, "duplicate series"),
    "duplicate unlabelled": (lines("a 1", "a{} 2"), 2, "duplicate series"),
    # counters
    "negative counter": (lines("# TYPE a counter", 'a{x="1"} 0', 'a{x="2"} -1'), 3,
                         "counter a is -1.0"),
    "counter -Inf": (lines("# TYPE a counter", "a -Inf"), 2, "never negative"),
    "NaN counter": (lines("# TYPE a counter", "a NaN"), 2, "never negative or NaN"),
    # le
    "le on gauge": (lines("# TYPE a gauge", 'a{le="1"} 1'), 2, "label le on a"),
    "le on counter": (lines("# TYPE a counter", 'a{le="1"} 1'), 2, "label le on a"),
    "le on untyped": (lines('a_bucket{le="1"} 1'), 1, "label le on a_bucket"),
    "le on histogram sum": (lines(HIST_OK[0], *HIST_OK[1:3], 'h_sum{le="1"} 3', "h_count 2"),
                            4, "label le on h_sum"),
    # histograms
    "histogram base sample": (lines("# TYPE h histogram", "h 1"), 2,
                              "without _bucket, _sum or _count"),
    "bucket without le": (lines("# TYPE h histogram", 'h_bucket{x="1"} 1'), 2,
                          "without an le label"),
    "bucket le not a number": (lines("# TYPE h histogram", 'h_bucket{le="big"} 1'), 2,
                               "is not a number"),
    "bucket le NaN": (lines("# TYPE h histogram", 'h_bucket{le="NaN"} 1'), 2,
                      "is not a number"),
    "buckets decrease": (lines("# TYPE h histogram", 'h_bucket{le="1"} 3', 'h_bucket{le="2"} 2',
                               'h_bucket{le="+Inf"} 3', "h_sum 1", "h_count 3"), 3,
                         "buckets are cumulative"),
    "buckets out of order": (lines("# TYPE h histogram", 'h_bucket{le="2"} 1',
                                   'h_bucket{le="1"} 1', 'h_bucket{le="+Inf"} 1', "h_sum 1",
                                   "h_count 1"), 3, "increasing le order"),
    "bucket after +Inf": (lines("# TYPE h histogram", 'h_bucket{le="+Inf"} 1',
                                'h_bucket{le="5"} 1', "h_sum 1", "h_count 1"), 3,
                          "increasing le order"),
    "same le spelled twice": (lines("# TYPE h histogram", 'h_bucket{le="1"} 1',
                                    'h_bucket{le="1.0"} 1'), 3, "increasing le order"),
    "fractional bucket count": (lines("# TYPE h histogram", 'h_bucket{le="1"} 0.5'), 2,
                                "not a count"),
    "no +Inf bucket": (lines("# TYPE h histogram", 'h_bucket{le="1"} 1', 'h_bucket{le="2"} 2',
                             "h_sum 1", "h_count 2"), 3, 'no le="+Inf" bucket'),
    "+Inf differs from count": (lines(*HIST_OK[:4], "h_count 3"), 5,
                                'is 3.0 but its le="+Inf" bucket is 2.0'),
    "no count": (lines(*HIST_OK[:4], "# TYPE next gauge", "next 1"), 2, "has no h_count"),
    "no sum": (lines(*HIST_OK[:3], HIST_OK[4]), 2, "has no h_sum"),
    "no count at end of text": (lines(*HIST_OK[:3], HIST_OK[4]).replace("h_count 2\n", ""), 2,
                              "has no h_count"),
    "no buckets": (lines("# TYPE h histogram", "h_sum 0", "h_count 0"), 2, "has no buckets"),
    "one label set incomplete": (lines(*HIST_OK, 'h_bucket{r="x",le="+Inf"} 1', 'h_sum{r="x"} 1'),
                                 6, 'h{r="x"} has no h_count'),
    "negative count": (lines("# TYPE h histogram", 'h_bucket{le="+Inf"} 0', "h_sum 0",
                             "h_count -1"), 4, "not a count"),
    # summaries
    "summary without quantile": (lines("# TYPE s summary", "s 1"), 2,
                                 "without a quantile label"),
    "quantile out of range": (lines("# TYPE s summary", 's{quantile="1.5"} 1'), 2,
                              "in [0, 1]"),
    "quantiles out of order": (lines("# TYPE s summary", 's{quantile="0.9"} 1',
                                     's{quantile="0.5"} 1'), 3, "increasing order"),
    "summary without sum": (lines("# TYPE s summary", 's{quantile="0.5"} 1', "s_count 1"), 2,
                            "has no s_sum"),
}


@pytest.mark.parametrize("case", sorted(REJECTED), ids=lambda c: c.replace(" ", "_"))
def test_rejected(case):
    source, line_no, message = REJECTED[case]
    with pytest.raises(PromParseError) as err:
        parse(source)
    assert (err.value.line_no, message in err.value.message) == (line_no, True), str(err.value)
    assert str(err.value).startswith(f"line {line_no}: ")


def test_rejected_cases_fixed_are_accepted():
    """The valid neighbours of some rejected cases parse, so the rejections are about the rule
    and not about something else in the text."""
    parse(lines(*HIST_OK))
    parse(lines(*HIST_OK, 'h_bucket{r="x",le="+Inf"} 1', 'h_sum{r="x"} 1', 'h_count{r="x"} 1'))
    parse(lines("# TYPE a counter", 'a{x="1",y="2"} 1', 'a{x="2",y="2"} 1'))
    parse(lines("# TYPE a counter", 'a{x="1"} 0', 'a{x="2"} 1'))
    parse(lines("# TYPE a gauge", 'a{lex="1"} 1'))
    parse(lines("# TYPE s summary", 's{quantile="0.5"} 1', 's_sum 1', "s_count 1"))
    parse(lines("# HELP a x", "# TYPE a gauge", "a 1"))
    parse(lines("# TYPE a gauge", "# HELP a x", "a 1"))
    parse("# TYPE a counter\na 1\n")
