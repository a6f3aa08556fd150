"""Routes authenticate by dependency, never by hand (the FastAPI full-stack template's pattern).

Who is calling is answered once, in starter/web/deps.py, by FastAPI dependencies a route declares
in its signature (`me: PagePerson`, `person: ApiPerson`, `view: VisibleIncident`, ...): a page's
missing sign-in becomes the redirect to the sign-in page by an exception handler, the API's a 401.
A route body that looks the person up itself (`me = await auth.current(request)`, then
`if me is None: return to_login(request)`) is the preamble this replaced, and this test keeps it
gone.

The test reads the syntax tree of every .py file under starter/web (nothing is imported or run).
A *route* is a function decorated by `@<router or app>.get/post/put/patch/delete/head/options/
api_route/route(...)`, or passed as the endpoint to `add_api_route`. An *authentication helper*
is one of AUTH_HELPERS (looking up a session or a bearer token, or building the redirect to the
sign-in page), or, to a fixed point, any function defined under starter/web whose body uses one
(so a wrapper such as a route-local `posted_form` that looks the viewer up counts too). A route's
body (nested functions included) may not call a helper, pass one to a thread
(`run_in_threadpool(authenticate, ...)`), or spell out the sign-in redirect (a "/login?" literal).
Naming a helper inside `Depends(...)` is how a route asks for it, and is what is wanted.

Also: `to_login` is defined once, and app.py assembles the app without defining a route.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "starter" / "web"

# Looking the caller up (a session cookie, a bearer token) or sending them to sign in. (Auth.sign_in
# turns a token into a new session: it is the sign-in itself, the one route that may call it.)
AUTH_HELPERS = frozenset(
    {"caller", "viewer", "current", "authenticate", "person_for_session", "to_login"}
)
ROUTE_DECORATORS = frozenset(
    {"get", "post", "put", "patch", "delete", "head", "options", "api_route", "route"}
)
LOGIN_REDIRECT = "/login?"

Function = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class Offence:
    path: str
    line: int
    route: str
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} in route {self.route}: {self.what}"


def _functions(tree: ast.AST) -> list[Function]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _routes(tree: ast.AST) -> list[Function]:
    """The functions of `tree` that are routes: decorated as one, or added with add_api_route."""
    functions = _functions(tree)
    endpoints: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in ("add_api_route", "add_route"):
            continue
        given = node.args[1:2] + [k.value for k in node.keywords if k.arg == "endpoint"]
        endpoints |= {g.id for g in given if isinstance(g, ast.Name)}
    routes = []
    for function in functions:
        decorated = any(
            isinstance(d, ast.Call)
            and isinstance(d.func, ast.Attribute)
            and d.func.attr in ROUTE_DECORATORS
            for d in function.decorator_list
        )
        if decorated or function.name in endpoints:
            routes.append(function)
    return routes


def _body(function: Function) -> list[ast.AST]:
    """Every node of the function's body (nested definitions included), not its signature."""
    out: list[ast.AST] = []
    for statement in function.body:
        out.extend(ast.walk(statement))
    return out


def _named(node: ast.expr, helpers: set[str], local: set[str]) -> str | None:
    """The helper `node` names (`authenticate`, `k.auth.viewer`), or None; a name bound in the
    function itself (a variable, a parameter) is not a helper, whatever it is called."""
    if isinstance(node, ast.Name) and node.id in helpers and node.id not in local:
        return node.id
    if isinstance(node, ast.Attribute) and node.attr in helpers:
        return node.attr
    return None


def _bound(function: Function) -> set[str]:
    """The names a function binds itself: its parameters and the variables it assigns."""
    args = function.args
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    names = {a.arg for a in every if a is not None}
    for node in _body(function):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def _uses(function: Function, helpers: set[str]) -> list[tuple[int, str]]:
    """(line, what) for each call of a helper, helper passed as an argument, or sign-in URL."""
    found = []
    local = _bound(function)
    for node in _body(function):
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id == "Depends":
                continue
            name = _named(node.func, helpers, local)
            if name is not None:
                found.append((node.lineno, f"calls {ast.unparse(node.func)}(...)"))
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                name = _named(arg, helpers, local)
                if name is not None:
                    found.append((node.lineno, f"passes {ast.unparse(arg)} to {_callee(node)}"))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith(LOGIN_REDIRECT)
        ):
            found.append((node.lineno, f"builds the sign-in redirect {node.value!r}"))
    return found


def _callee(call: ast.Call) -> str:
    return ast.unparse(call.func)


def auth_helpers(trees: list[ast.AST]) -> set[str]:
    """AUTH_HELPERS and, to a fixed point, the functions under starter/web that use one."""
    helpers = set(AUTH_HELPERS)
    functions = [f for tree in trees for f in _functions(tree)]
    changed = True
    while changed:
        changed = False
        for function in functions:
            if function.name in helpers:
                continue
            if any(not what.startswith("builds") for _, what in _uses(function, helpers)):
                helpers.add(function.name)
                changed = True
    return helpers


def _parsed() -> dict[str, ast.Module]:
    return {
        str(path.relative_to(ROOT)): ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for path in sorted(WEB.rglob("*.py"))
    }


def offences(sources: dict[str, ast.Module]) -> tuple[list[Offence], set[str]]:
    helpers = auth_helpers(list(sources.values()))
    found = []
    for path, tree in sources.items():
        for route in _routes(tree):
            for line, what in _uses(route, helpers):
                found.append(Offence(path, line, route.name, what))
    return sorted(found, key=lambda o: (o.path, o.line)), helpers


def test_no_route_authenticates_by_hand() -> None:
    found, helpers = offences(_parsed())
    assert not found, (
        f"{len(found)} hand-written authentication step(s) in route bodies: take the person "
        "from a dependency of starter/web/deps.py instead (PagePerson, ApiPerson, MaybePerson, "
        "VisibleIncident, ...); authentication helpers: "
        + ", ".join(sorted(helpers))
        + "\n"
        + "\n".join(str(o) for o in found)
    )


def test_to_login_is_defined_once() -> None:
    defined = [
        f"{path}:{f.lineno}"
        for path, tree in _parsed().items()
        for f in _functions(tree)
        if f.name == "to_login"
    ]
    assert len(defined) == 1, defined


def test_app_py_assembles_and_defines_no_route() -> None:
    tree = _parsed()["starter/web/app.py"]
    assert not [r.name for r in _routes(tree)]


def test_the_check_finds_what_it_should() -> None:
    """The rules on a small source: what is caught and what is left alone."""
    code = """
from fastapi import APIRouter, Depends

router = APIRouter()

def lookup(request):
    return request.app.auth.viewer(request)

async def wrapper(request):
    return lookup(request)

def unrelated(x):
    return x + 1

def person(request):
    return lookup(request)

@router.get("/a")
async def by_hand(request):
    me = await request.app.auth.current(request)
    if me is None:
        return to_login(request)

@router.get("/b")
async def in_a_thread(request, run_in_threadpool):
    return await run_in_threadpool(authenticate, request, "x")

@router.post("/c")
async def through_a_wrapper(request):
    return await wrapper(request)

@router.get("/d")
def spelt_out(request):
    return "/login?" + "next=/d"

@router.get("/e")
async def nested(request):
    def load():
        return lookup(request)
    return load

@router.get("/good")
async def good(request, me=Depends(person), other=Depends(lookup)):
    return unrelated(me)

def act(request):
    return request.state.actor, caller(request)

def endpoints(router):
    router.add_api_route("/f", act, methods=["POST"])

def not_a_route(request):
    return to_login(request)
"""
    found, helpers = offences({"t.py": ast.parse(code)})
    assert helpers >= {"lookup", "wrapper", "person", "act", "not_a_route"}
    assert "unrelated" not in helpers and "good" not in helpers
    assert {o.route for o in found} == {
        "by_hand",
        "in_a_thread",
        "through_a_wrapper",
        "spelt_out",
        "nested",
        "act",
    }
