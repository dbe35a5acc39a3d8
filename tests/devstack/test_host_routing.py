"""Route templates, constraints and the host's route order, without a server."""

from __future__ import annotations

import azure.functions as func
import pytest

from devstack.host import FunctionsRouter, HostSettings, RouteTemplateError
from devstack.host._constraints import build_constraint
from devstack.host._http import join_headers, path_segments, query_params
from devstack.host._template import parse_template


def match(template: str, path: str) -> dict[str, str] | None:
    return parse_template(template).match(path_segments(path.encode()))


@pytest.mark.parametrize(
    ("template", "path", "values"),
    [
        ("items/{id}", "/items/42", {"id": "42"}),
        ("items/{id}", "/ITEMS/42", {"id": "42"}),
        ("items/{id}", "/items/42/", {"id": "42"}),
        ("items/{id}", "/items", None),
        ("items/{id}", "/items/42/x", None),
        ("items/{id}", "/items//", None),
        ("a/{b}/c", "/a//c", None),
        ("items/{id?}", "/items", {}),
        ("items/{id=7}", "/items", {"id": "7"}),
        ("items/{id=7}", "/items/8", {"id": "8"}),
        ("a/{b?}/c", "/a", None),
        ("files/{*rest}", "/files/x/y/z", {"rest": "x/y/z"}),
        ("files/{**rest}", "/files/x/y", {"rest": "x/y"}),
        ("files/{*rest}", "/files", {}),
        ("files/{*rest=none}", "/files", {"rest": "none"}),
        ("f/{name}.{ext}", "/f/a.b.c", {"name": "a.b", "ext": "c"}),
        ("f/{name}.{ext?}", "/f/report.pdf", {"name": "report", "ext": "pdf"}),
        ("f/{name}.{ext?}", "/f/report", {"name": "report"}),
        ("f/{a}-{b}", "/f/x-y-z", {"a": "x-y", "b": "z"}),
        ("f/v{n:int}", "/f/V12", {"n": "12"}),
        ("f/v{n:int}", "/f/vx", None),
        ("x/{v}", "/x/caf%C3%A9%20au%20lait", {"v": "café au lait"}),
        ("x/{v}", "/x/a%2Fb", {"v": "a%2Fb"}),
        ("x/{v}", "/x/a/../b", {"v": "b"}),
        ("x/{v}", "/x/%FF", {"v": "%FF"}),
        ("", "/", {}),
    ],
)
def test_templates_match_as_aspnet_core(
    template: str, path: str, values: dict[str, str] | None
) -> None:
    assert match(template, path) == values


@pytest.mark.parametrize(
    "template",
    [
        "a/{b",
        "a/b}",
        "a/{b}{c}",
        "a/{*b}/c",
        "a/x{*b}",
        "a/{b?}x",
        "a/{b}-{c?}",
        "a/{b}/{B}",
        "a/{b?=1}",
        "a/{*b?}",
        "a?",
        "a//b",
        "a/{}",
        "a/{b:nosuch}",
        "a/{b:int(1)}",
        "a/{b:length(x)}",
        "a/{b:range(1)}",
        "a/{b:regex(()}",
        "a/{b:regex(x}",
    ],
)
def test_bad_templates_are_refused(template: str) -> None:
    with pytest.raises(RouteTemplateError) as caught:
        parse_template(template)
    assert caught.value.code == "route_template"
    assert caught.value.template == template


def test_braces_are_escaped_by_doubling_also_inside_regexes() -> None:
    assert match("a{{b}}/{v}", "/a{b}/x") == {"v": "x"}
    assert match(r"r/{v:regex(^\d{{3}}$)}", "/r/123") == {"v": "123"}
    assert match(r"r/{v:regex(^\d{{3}}$)}", "/r/1234") is None
    assert match("r/{v:regex(^(a|b)$):length(1)}", "/r/b") == {"v": "b"}


def _ok(constraint: str, value: str) -> bool:
    name, _, argument = constraint.partition("(")
    return build_constraint(name, argument[:-1] if argument else None)(value)


GUID = "cd2c1638-1638-72d5-1638-deadbeef1638"


@pytest.mark.parametrize(
    ("constraint", "good", "bad"),
    [
        ("int", ["0", "-12", "+7", " 5 ", "2147483647"], ["2147483648", "1.0", "1e3", "x", "١"]),
        ("long", ["9223372036854775807", "-9"], ["9223372036854775808", "0x10"]),
        ("bool", ["true", "FALSE", "True"], ["yes", "1", "truth"]),
        (
            "guid",
            [
                GUID,
                GUID.upper(),
                GUID.replace("-", ""),
                f"{{{GUID}}}",
                f"({GUID})",
                "{0xcd2c1638,0x1638,0x72d5,{0x16,0x38,0xde,0xad,0xbe,0xef,0x16,0x38}}",
            ],
            [GUID[:-1], GUID + "0", f"{{{GUID})", "not-a-guid", GUID.replace("c", "g")],
        ),
        ("alpha", ["abc", "ABC"], ["ab1", "é", "a-b"]),
        (
            "datetime",
            [
                "2016-12-31",
                "2016-12-31T07:32:00Z",
                "2016-12-31 7:32pm",
                "12/31/2016",
                "2016/12/31",
                "31 Dec 2016",
            ],
            ["2016-13-01", "yesterday", "20161231", "12/31/2016 25:00"],
        ),
        ("decimal", ["49.99", "-1,000.01", "5", ".5"], ["1e5", "NaN", "abc", "1.2.3"]),
        ("double", ["1.234", "-1,001.01e8", "NaN", "-Infinity"], ["abc", "1e", "--1"]),
        ("float", ["1.5"], ["x"]),
        ("length(3)", ["abc", "é😀"], ["ab", "abcd"]),
        ("length(2,4)", ["ab", "abcd"], ["a", "abcde"]),
        ("minlength(2)", ["ab", "abc"], ["a"]),
        ("maxlength(2)", ["a", "ab"], ["abc"]),
        ("min(10)", ["10", "11"], ["9", "x"]),
        ("max(10)", ["10", "-5"], ["11", "x"]),
        ("range(5,7)", ["5", "6", "7"], ["4", "8", "six"]),
        (r"regex(^[a-z]{2}\d$)", ["ab1", "AB1"], ["abc", "a1", "ab12"]),
        ("regex(b)", ["abc"], ["xyz"]),
        (r"regex(^(?<x>a)\k<x>$)", ["aa"], ["ab"]),
        ("required", ["x"], [""]),
        ("file", ["a.txt", "x/y.z"], ["a", "a.", "x.y/z"]),
        ("nonfile", ["a"], ["a.txt"]),
    ],
)
def test_constraints_accept_what_dotnet_parses(
    constraint: str, good: list[str], bad: list[str]
) -> None:
    assert [v for v in good if not _ok(constraint, v)] == []
    assert [v for v in bad if _ok(constraint, v)] == []


def test_query_parameters_join_repeated_keys_and_drop_empty_values() -> None:
    assert query_params("a=1&b=&A=2&c&d=x+y&e=%C3%A9&f=1&f=") == {
        "a": "1,2",
        "d": "x y",
        "e": "é",
        "f": "1,",
    }


def test_headers_are_lower_cased_and_repeated_ones_joined() -> None:
    assert join_headers([("X-A", "1"), ("x-a", "2"), ("Host", "h")]) == {"x-a": "1,2", "host": "h"}


def _router(*routes: tuple[str, list[str] | None], prefix: str = "api") -> FunctionsRouter:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    for index, (route, methods) in enumerate(routes):

        def handler(req: func.HttpRequest) -> str:
            return "x"

        handler.__name__ = f"f{index}"
        app.route(route=route, methods=methods)(handler)
    return FunctionsRouter(app, settings=HostSettings(route_prefix=prefix), threads=1)


def test_routes_are_ordered_as_the_host_orders_them() -> None:
    router = _router(
        ("{*all}", None),
        ("items/{id}", None),
        ("items/{*rest}", None),
        ("items/{id:int}", None),
        ("items/{id:int:min(1)}", None),
        ("items/new", None),
        ("items/{id}/parts", None),
        ("items", None),
    )
    try:
        assert [f.route for f in router.functions] == [
            "items/new",
            "items/{id:int:min(1)}",
            "items/{id:int}",
            "items/{id}/parts",
            "items/{id}",
            "items/{*rest}",
            "items",
            "{*all}",
        ]
    finally:
        router.close()


def test_the_first_route_matching_path_and_method_wins() -> None:
    router = _router(("things/new", ["GET"]), ("things/{id}", ["POST"]), ("other", ["GET"]))
    try:
        resolved = router.resolve("POST", "http://h/api/things/new")
        assert resolved is not None
        assert (resolved[0].route, resolved[1]) == ("things/{id}", {"id": "new"})
        assert router.resolve("PUT", "http://h/api/things/new") is None
        assert router.resolve("HEAD", "/api/other") is None
        assert router.resolve("get", "/API/OTHER") is not None
    finally:
        router.close()


def test_an_empty_route_prefix_serves_at_the_root() -> None:
    router = _router(("hello", None), prefix="")
    try:
        assert router.resolve("GET", "/hello") is not None
        assert router.resolve("GET", "/api/hello") is None
    finally:
        router.close()
