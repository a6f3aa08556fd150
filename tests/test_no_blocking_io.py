"""No coroutine in starter/ does blocking store I/O on the event loop (issue 16).

The store is synchronous SQLAlchemy. A session opened inside an `async def` holds up the event
loop, and with it every other request, for as long as the database takes. Routes that touch the
store are either plain `def` (FastAPI runs those in its thread pool) or hand the store work to a
thread (`await run_in_threadpool(helper, ...)`, `await asyncio.to_thread(helper, ...)`).

The test reads the syntax tree of every .py file under starter/ (nothing is imported or run) and,
for every `async def` there (module functions, methods, and ones nested in other functions), looks
at the statements that run on the event loop: its own body, leaving out the bodies of nested
`def`s, `async def`s (checked on their own) and lambdas, which run only when something calls them
(a thread, usually). In those statements a *call* is an offence when it calls

1. anything imported from the `store` package, by whatever name it was bound to at module or
   function level (`from store.db import session_scope`, `from store import incident_rows`,
   `from store import access_log as store`, `import store.credentials`): a function called
   directly (`session_scope(url)`, hence also every `with session_scope(...)` block) or through
   the module (`incident_rows.list_incidents(s, ...)`); names starting with a capital letter are
   data classes (`AccessEntry(...)`) and are not I/O;
2. any attribute of a name spelt like a module of the store package (`incident_rows`,
   `credentials`, `notifications`, `reporting`, `digests`, `db`, ..., read from store/ itself, so
   a new store module is covered the day it is added) or `store`, imported or not
   (`credentials.person_for_token(...)`, `store.record(...)`);
3. a *blocking helper*: a synchronous function or method defined anywhere in starter/ whose own
   loop-side body (as above) makes an offending call, found to a fixed point; so `Auth.viewer`,
   `Auth.sign_in`, `authenticate`, `deps.caller`, `reports._report_rows`, `ui_gate`'s `reader` and
   whatever calls them. A helper is matched by its name, called plainly (`authenticate(...)`) or as
   an attribute (`k.auth.viewer(...)`, `self.viewer(...)`), the receiver is not resolved, so a
   helper's name is in effect reserved: name an unrelated function differently.

Passing a helper to a thread is no call: `await run_in_threadpool(auth.viewer, request)` and
`asyncio.to_thread(self._write, batch)` are fine. Calls inside an f-string, a default or a
decorator of the `async def` are looked at like any other (defaults and decorators run at
definition time, which is on the loop too when the definition is nested in a coroutine).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STARTER = ROOT / "starter"
STORE_PACKAGE = "store"
# Rule 2: the package and its modules by name, as they are on disk (one module per domain).
STORE_NAMES = frozenset(
    {STORE_PACKAGE} | {p.stem for p in (ROOT / STORE_PACKAGE).glob("*.py") if p.stem != "__init__"}
)

Function = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class Offence:
    path: str
    line: int
    function: str
    call: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} in async {self.function}: {self.call}"


def _loop_side(function: Function) -> list[ast.AST]:
    """The nodes of `function` that run when it is called, nested function bodies left out."""
    out: list[ast.AST] = []
    stack: list[ast.AST] = list(function.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            # A nested definition: its decorators and defaults run now, its body later.
            stack.extend(node.decorator_list)
            stack.extend(node.args.defaults)
            stack.extend(d for d in node.args.kw_defaults if d is not None)
            continue
        if isinstance(node, ast.Lambda):
            stack.extend(node.args.defaults)
            stack.extend(d for d in node.args.kw_defaults if d is not None)
            continue
        if isinstance(node, ast.ClassDef):
            stack.extend(node.decorator_list)
            stack.extend(node.bases)
            stack.extend(node.body)
            continue
        out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


def _in_store(module: str | None) -> bool:
    return bool(module) and (module == STORE_PACKAGE or str(module).startswith(STORE_PACKAGE + "."))


def _store_imports(nodes: list[ast.AST] | ast.Module) -> set[str]:
    """Names bound to something from the store package by the imports among `nodes`."""
    found: set[str] = set()
    walked = ast.walk(nodes) if isinstance(nodes, ast.Module) else iter(nodes)
    for node in walked:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _in_store(alias.name):
                    found.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _in_store(node.module):
            found.update(alias.asname or alias.name for alias in node.names)
    return found


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _callee(call: ast.Call) -> str:
    return ast.unparse(call.func)


def _offending(call: ast.Call, store_bound: set[str], helpers: set[str]) -> bool:
    func = call.func
    if isinstance(func, ast.Name):
        if func.id in helpers:
            return True
        return func.id in store_bound and not func.id[:1].isupper()
    if isinstance(func, ast.Attribute):
        if func.attr in helpers:
            return True
        root = _root_name(func.value)
        if root in STORE_NAMES or root in store_bound:
            return not func.attr[:1].isupper()
    return False


@dataclass
class Source:
    path: str
    module_imports: set[str]
    functions: list[Function]


def _sources() -> list[Source]:
    out = []
    for path in sorted(STARTER.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        functions = [
            n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        ]
        out.append(Source(str(path.relative_to(ROOT)), _store_imports(tree), functions))
    return out


def _calls(source: Source, function: Function) -> tuple[list[ast.Call], set[str]]:
    body = _loop_side(function)
    bound = source.module_imports | _store_imports(body)
    return [n for n in body if isinstance(n, ast.Call)], bound


def blocking_helpers(sources: list[Source]) -> set[str]:
    """The synchronous functions of starter/ that reach the store, to a fixed point."""
    helpers: set[str] = set()
    changed = True
    while changed:
        changed = False
        for source in sources:
            for function in source.functions:
                if isinstance(function, ast.AsyncFunctionDef) or function.name in helpers:
                    continue
                calls, bound = _calls(source, function)
                if any(_offending(c, bound, helpers) for c in calls):
                    helpers.add(function.name)
                    changed = True
    return helpers


def offences() -> tuple[list[Offence], set[str]]:
    sources = _sources()
    helpers = blocking_helpers(sources)
    found = []
    for source in sources:
        for function in source.functions:
            if not isinstance(function, ast.AsyncFunctionDef):
                continue
            calls, bound = _calls(source, function)
            for call in calls:
                if _offending(call, bound, helpers):
                    found.append(Offence(source.path, call.lineno, function.name, _callee(call)))
    return sorted(found, key=lambda o: (o.path, o.line)), helpers


def test_no_async_def_in_starter_touches_the_store_on_the_event_loop() -> None:
    found, helpers = offences()
    assert not found, (
        f"{len(found)} blocking store call(s) on the event loop (make the route a plain def, or "
        "`await run_in_threadpool(helper, ...)`); blocking helpers: "
        + ", ".join(sorted(helpers))
        + "\n"
        + "\n".join(str(o) for o in found)
    )


def test_the_check_finds_what_it_should() -> None:
    """The rules on small sources: what is caught and what is left alone."""
    code = """
from store import notifications
from store.db import session_scope
from store.access_log import AccessEntry
from store.incident_rows import list_incidents
import store.reporting

def lookup(url):
    with session_scope(url) as s:
        return notifications.inbox(s, recipient="t")

def indirect(x):
    return x.auth.lookup(1)

def harmless(x):
    return x + 1

async def bad_with(url):
    with session_scope(url) as s:
        s.execute("SELECT 1")

async def bad_module(s):
    return notifications.inbox(s, recipient="p")

async def bad_function(s):
    return list_incidents(s, phase="triage")

async def bad_dotted(s):
    return store.reporting.overdue_now(s)

async def bad_unimported(s, credentials):
    return credentials.person_for_token(s, token="t")

async def bad_helper(k):
    return indirect(k)

async def bad_method(k):
    return k.auth.lookup(2)

async def bad_local_import(s):
    from store import digest as d
    return d.rows(s)

async def good(k, run_in_threadpool):
    def load():
        with session_scope("u") as s:
            return notifications.inbox(s, recipient="p")
    entry = AccessEntry(at=1)
    await run_in_threadpool(load)
    await run_in_threadpool(k.auth.lookup, 3)
    return harmless(entry), (lambda: lookup("u"))

async def outer(url):
    async def inner():
        return lookup(url)
    return inner
"""
    tree = ast.parse(code)
    functions = [
        n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    source = Source("t.py", _store_imports(tree), functions)
    helpers = blocking_helpers([source])
    assert helpers == {"lookup", "indirect", "load"}
    bad = set()
    for function in functions:
        if isinstance(function, ast.AsyncFunctionDef):
            calls, bound = _calls(source, function)
            if any(_offending(c, bound, helpers) for c in calls):
                bad.add(function.name)
    assert bad == {
        "bad_with",
        "bad_module",
        "bad_function",
        "bad_dotted",
        "bad_unimported",
        "bad_helper",
        "bad_method",
        "bad_local_import",
        "inner",
    }
