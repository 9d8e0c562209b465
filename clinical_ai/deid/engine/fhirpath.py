"""FHIRPath for de-identification rules, over the typed node tree of :mod:`nodes`.

Expressions are parsed with fhirpathpy's ANTLR grammar (``entireExpression``, with errors raised instead of
printed) and compiled here into closures that evaluate over :class:`~nodes.Node` objects, so a rule's
result is a set of node identities the engine can change in place. fhirpathpy's own evaluator works on
copies of plain JSON and has no FHIR type information, which ``nodesByType`` needs.

Supported: paths (type filters such as ``Patient.`` / ``Resource.``, choice elements ``value`` for
``valueQuantity``), indexers, ``$this``/``$index``, ``%resource``/``%rootResource``/``%context``, literals
(string, number, boolean, date/dateTime/time, quantity, ``{}``), the operators ``. [] + - * / div mod & |
= != ~ !~ < <= > >= is as in contains and or xor implies``, the reference anonymizer's ``nodesByType('T')``
and ``nodesByName('n')``, and the common functions (``fhirpath_functions.FUNCTIONS``). Anything else is
a syntax error at configuration load, never a surprise at run time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from clinical_ai.deid.engine import fhir_types
from clinical_ai.deid.engine.fhirpath_functions import FUNCTIONS, Env, Evaluator
from clinical_ai.deid.engine.fhirpath_operators import OPERATORS
from clinical_ai.deid.engine.fhirpath_values import (
    Collection,
    FhirPathEvaluationError,
    FPDateTime,
    FPQuantity,
    FPTime,
    Item,
    is_number,
    is_type,
    single,
    truthy,
)
from clinical_ai.deid.engine.nodes import Node

__all__ = [
    "CompiledExpression",
    "FhirPathEvaluationError",
    "FhirPathSyntaxError",
    "IndexedHead",
    "compile_expression",
    "indexed_head",
    "member_path",
    "member_step",
]


class FhirPathSyntaxError(ValueError):
    """The expression is not valid FHIRPath, or uses something this engine does not support."""


class CompiledExpression:
    """A parsed and compiled FHIRPath expression."""

    def __init__(self, text: str, evaluator: Evaluator) -> None:
        self.text = text
        self._evaluator = evaluator

    def __repr__(self) -> str:
        return f"CompiledExpression({self.text!r})"

    def evaluate(self, focus: Node | Collection) -> Collection:
        """Evaluate with ``focus`` as input and ``$this``; ``%resource`` is the focus' resource."""
        collection: Collection = list(focus) if isinstance(focus, list) else [focus]
        first = collection[0] if collection else None
        resource = first.resource() if isinstance(first, Node) else None
        root = first.root() if isinstance(first, Node) else None
        env = Env(this=collection, resource=resource, root_resource=root, context=collection)
        return self._evaluator(collection, env)

    def select_nodes(self, focus: Node) -> list[Node]:
        """The distinct nodes the expression selects from ``focus``, in document order of discovery."""
        seen: set[int] = set()
        selected: list[Node] = []
        for item in self.evaluate(focus):
            if isinstance(item, Node) and id(item) not in seen:
                seen.add(id(item))
                selected.append(item)
        return selected

    def is_true(self, focus: Node | Collection) -> bool:
        """FHIRPath predicate: the result is the single boolean true (or a single non-boolean item)."""
        return truthy(self.evaluate(focus))


@lru_cache(maxsize=2048)
def compile_expression(text: str) -> CompiledExpression:
    """Parse and compile ``text`` (cached); raises :class:`FhirPathSyntaxError`."""
    ast = _parse(text)
    return CompiledExpression(text, _compile(ast))


# --- shapes the compiled rules answer without the general evaluator ----------------------------------------


@dataclass(frozen=True, slots=True)
class IndexedHead:
    """An expression that starts with ``nodesByType('T')`` or ``nodesByName('n')`` on its input: the head
    can be read from an index of the input resource, and ``rest`` applied to what it gives (with the
    environment the whole expression would have had)."""

    function: str  # "nodesByType" or "nodesByName"
    argument: str
    rest: Evaluator
    # True when ``rest`` gives no nodes and raises nothing on an empty input: each invocation after the head
    # is a member, or a function whose arguments are all evaluated per item (``where``, ``exists``...)
    # other than ``iif`` (which falls back to ``$this``). Then an empty head needs no evaluation.
    empty_gives_nothing: bool


@lru_cache(maxsize=2048)
def member_path(text: str) -> tuple[str, ...] | None:
    """The member names when ``text`` is only a path of members (``name``, ``entry.fullUrl``), else None."""
    try:
        ast = _parse(text)
    except FhirPathSyntaxError:
        return None
    names: list[str] = []
    while ast.get("type") == "InvocationExpression":
        left, invocation = _children(ast)
        if invocation.get("type") != "MemberInvocation":
            return None
        names.append(_identifier_text(_children(invocation)[0]))
        ast = left
    first = _term_invocation(ast)
    if first is None or first.get("type") != "MemberInvocation":
        return None
    names.append(_identifier_text(_children(first)[0]))
    return tuple(reversed(names))


@lru_cache(maxsize=2048)
def indexed_head(text: str) -> IndexedHead | None:
    """``text`` split into its ``nodesByType``/``nodesByName`` head and the invocations after it, when it
    is of that shape (``nodesByType('Extension').where(url = 'x')``), else None."""
    try:
        ast = _parse(text)
    except FhirPathSyntaxError:
        return None
    invocations: list[dict[str, Any]] = []
    while ast.get("type") == "InvocationExpression":
        left, invocation = _children(ast)
        invocations.append(invocation)
        ast = left
    first = _term_invocation(ast)
    if first is None or first.get("type") != "FunctionInvocation":
        return None
    parts = _children(_children(first)[0])
    name = _identifier_text(parts[0])
    params = _children(parts[1]) if len(parts) > 1 else []
    if name not in ("nodesByType", "nodesByName") or len(params) != 1:
        return None
    literal = _children(params[0])[0] if params[0].get("type") == "TermExpression" else {}
    if literal.get("type") != "LiteralTerm" or _children(literal)[0].get("type") != "StringLiteral":
        return None
    argument = _unescape(str(_children(literal)[0].get("text", ""))[1:-1])
    steps = [_compile(invocation) for invocation in reversed(invocations)]
    empty_gives_nothing = all(_empty_gives_nothing(invocation) for invocation in invocations)

    def rest(focus: Collection, env: Env) -> Collection:
        for step in steps:
            focus = step(focus, env)
        return focus

    return IndexedHead(name, argument, rest, empty_gives_nothing)


def _empty_gives_nothing(invocation: dict[str, Any]) -> bool:
    if invocation.get("type") == "MemberInvocation":
        return True
    if invocation.get("type") != "FunctionInvocation":
        return False
    parts = _children(_children(invocation)[0])
    name = _identifier_text(parts[0])
    params = _children(parts[1]) if len(parts) > 1 else []
    function = FUNCTIONS.get(name)
    if function is None or name == "iif":
        return False
    return all(
        position in function.lambdas or position in function.type_args for position in range(len(params))
    )


def _term_invocation(ast: dict[str, Any]) -> dict[str, Any] | None:
    """The invocation of a term that is one (``name``, ``f(x)``), else None."""
    if ast.get("type") != "TermExpression":
        return None
    term = _children(ast)[0]
    if term.get("type") != "InvocationTerm":
        return None
    return _children(term)[0]


def member_step(items: list[Node], name: str) -> list[Node]:
    """``items.name`` over nodes, as the general evaluator's member invocation answers it."""
    is_type_name = name[:1].isupper()
    result: list[Node] = []
    for item in items:
        if is_type_name and item.is_resource and fhir_types.type_is(item.fhir_type, name, is_resource=True):
            result.append(item)
            continue
        matched = False
        for child in item.children:
            if child.name == name:
                result.append(child)
                matched = True
        if not matched:
            result.extend(child for child in item.children if child.json_key == name)
    return result


# --- parsing (fhirpathpy's grammar) --------------------------------------------------------------------


def _parse(text: str) -> dict[str, Any]:
    from antlr4 import CommonTokenStream, InputStream  # type: ignore[import-untyped]
    from antlr4.error.ErrorListener import ErrorListener  # type: ignore[import-untyped]
    from antlr4.tree.Tree import ParseTreeWalker  # type: ignore[import-untyped]
    from fhirpathpy.parser.ASTPathListener import ASTPathListener
    from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
    from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

    class _Raise(ErrorListener):  # type: ignore[misc]
        def syntaxError(
            self, recognizer: Any, offending: Any, line: int, column: int, msg: str, e: Any
        ) -> None:
            raise FhirPathSyntaxError(f"invalid FHIRPath {text!r} at column {column + 1}: {msg}")

    if not text or not text.strip():
        raise FhirPathSyntaxError("empty FHIRPath expression")
    lexer = FHIRPathLexer(InputStream(text))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_Raise())
    parser: Any = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(_Raise())
    try:
        tree = parser.entireExpression()
    except FhirPathSyntaxError:
        raise
    except Exception as error:  # the ANTLR runtime raises its own recognition errors
        raise FhirPathSyntaxError(f"invalid FHIRPath {text!r}: {error}") from error
    listener_class: Any = ASTPathListener
    listener = listener_class()
    ParseTreeWalker().walk(listener, tree)
    root: dict[str, Any] = listener.parentStack[0]
    node: dict[str, Any] = root["children"][0]
    while node.get("type") == "EntireExpression":
        node = node["children"][0]
    return node


# --- compiling -------------------------------------------------------------------------------------------


def _children(ast: dict[str, Any]) -> list[dict[str, Any]]:
    children: list[dict[str, Any]] = ast.get("children") or []
    return children


def _compile(ast: dict[str, Any]) -> Evaluator:
    kind = ast.get("type")
    compiler = _COMPILERS.get(str(kind))
    if compiler is None:
        raise FhirPathSyntaxError(f"unsupported FHIRPath construct: {kind}")
    return compiler(ast)


def _compile_first_child(ast: dict[str, Any]) -> Evaluator:
    return _compile(_children(ast)[0])


def _compile_invocation_expression(ast: dict[str, Any]) -> Evaluator:
    left_ast, invocation_ast = _children(ast)
    left = _compile(left_ast)
    invocation = _compile(invocation_ast)

    def evaluate(focus: Collection, env: Env) -> Collection:
        return invocation(left(focus, env), env)

    return evaluate


def _identifier_text(ast: dict[str, Any]) -> str:
    text = str(ast.get("text") or ast["terminalNodeText"][0])
    if text.startswith("`") and text.endswith("`"):
        return text[1:-1]
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    return text


def _compile_member(ast: dict[str, Any]) -> Evaluator:
    name = _identifier_text(_children(ast)[0])
    is_type_name = name[:1].isupper()

    def evaluate(focus: Collection, env: Env) -> Collection:
        result: Collection = []
        for item in focus:
            if not isinstance(item, Node):
                continue
            if (
                is_type_name
                and item.is_resource
                and fhir_types.type_is(item.fhir_type, name, is_resource=True)
            ):
                result.append(item)
                continue
            matched = False
            for child in item.children:
                if child.name == name:
                    result.append(child)
                    matched = True
            if not matched:
                result.extend(child for child in item.children if child.json_key == name)
        return result

    return evaluate


def _compile_this(ast: dict[str, Any]) -> Evaluator:
    return lambda focus, env: list(env.this)


def _compile_index(ast: dict[str, Any]) -> Evaluator:
    return lambda focus, env: [] if env.index is None else [env.index]


def _compile_total(ast: dict[str, Any]) -> Evaluator:
    raise FhirPathSyntaxError("$total (aggregate) is not supported")


def _compile_external_constant(ast: dict[str, Any]) -> Evaluator:
    constant = _children(ast)[0]
    inner = _children(constant)[0]
    name = (
        _identifier_text(inner)
        if inner.get("type") == "Identifier"
        else str(inner.get("text", "")).strip("'")
    )
    if name == "resource":
        return lambda focus, env: [env.resource] if env.resource is not None else []
    if name == "rootResource":
        return lambda focus, env: [env.root_resource] if env.root_resource is not None else []
    if name == "context":
        return lambda focus, env: list(env.context)
    constants = {
        "ucum": "http://unitsofmeasure.org",
        "sct": "http://snomed.info/sct",
        "loinc": "http://loinc.org",
    }
    if name in constants:
        value = constants[name]
        return lambda focus, env: [value]
    raise FhirPathSyntaxError(f"unknown environment variable %{name}")


def _compile_literal(ast: dict[str, Any]) -> Evaluator:
    kind = ast["type"]
    text = str(ast.get("text", ""))
    value: Item
    if kind == "NullLiteral":
        return lambda focus, env: []
    if kind == "BooleanLiteral":
        value = text == "true"
    elif kind == "StringLiteral":
        value = _unescape(text[1:-1])
    elif kind == "NumberLiteral":
        number = Decimal(text)
        value = int(number) if "." not in text else number
    elif kind == "DateTimeLiteral":
        parsed = FPDateTime.parse(text[1:])
        if parsed is None:
            raise FhirPathSyntaxError(f"invalid date/time literal {text}")
        try:
            parsed.as_datetime()
        except FhirPathEvaluationError as error:
            raise FhirPathSyntaxError(f"invalid date/time literal {text}") from error
        value = parsed
    elif kind == "TimeLiteral":
        parsed_time = FPTime.parse(text[2:])
        if parsed_time is None:
            raise FhirPathSyntaxError(f"invalid time literal {text}")
        value = parsed_time
    elif kind == "QuantityLiteral":
        quantity = _children(ast)[0]
        number_text = quantity["terminalNodeText"][0]
        unit_nodes = _children(quantity)
        unit = "1"
        if unit_nodes:
            unit_ast = unit_nodes[0]
            unit_text = (unit_ast["terminalNodeText"] or [""])[0]
            if not unit_text and _children(unit_ast):
                unit_text = _children(unit_ast)[0]["terminalNodeText"][0]
            unit = unit_text.strip("'")
        value = FPQuantity(Decimal(number_text), unit)
    else:
        raise FhirPathSyntaxError(f"unsupported literal {kind}")
    return lambda focus, env: [value]


_ESCAPES = {"'": "'", '"': '"', "`": "`", "r": "\r", "n": "\n", "t": "\t", "f": "\f", "\\": "\\", "/": "/"}


def _unescape(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        if code.startswith("u"):
            return chr(int(code[1:], 16))
        return _ESCAPES.get(code, code)

    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", replace, text)


def _compile_literal_term(ast: dict[str, Any]) -> Evaluator:
    return _compile_literal(_children(ast)[0])


def _compile_indexer(ast: dict[str, Any]) -> Evaluator:
    collection_ast, index_ast = _children(ast)
    collection = _compile(collection_ast)
    index = _compile(index_ast)

    def evaluate(focus: Collection, env: Env) -> Collection:
        items = collection(focus, env)
        position = single(index(focus, env))
        if position is None:
            return []
        if not isinstance(position, int) or isinstance(position, bool):
            raise FhirPathEvaluationError("an indexer needs an integer")
        return [items[position]] if 0 <= position < len(items) else []

    return evaluate


def _compile_polarity(ast: dict[str, Any]) -> Evaluator:
    sign = ast["terminalNodeText"][0]
    operand = _compile(_children(ast)[0])

    def evaluate(focus: Collection, env: Env) -> Collection:
        value = single(operand(focus, env))
        if value is None:
            return []
        if isinstance(value, FPQuantity):
            return [FPQuantity(-value.value, value.unit)] if sign == "-" else [value]
        if not is_number(value):
            raise FhirPathEvaluationError(f"unary {sign} needs a number")
        return [-value] if sign == "-" else [value]

    return evaluate


def _compile_binary(ast: dict[str, Any]) -> Evaluator:
    operator = ast["terminalNodeText"][0]
    left_ast, right_ast = _children(ast)
    left = _compile(left_ast)
    right = _compile(right_ast)
    implementation = OPERATORS.get(operator)
    if implementation is None:
        raise FhirPathSyntaxError(f"unsupported operator {operator}")

    def evaluate(focus: Collection, env: Env) -> Collection:
        return implementation(left(focus, env), right(focus, env))

    return evaluate


def _compile_type_expression(ast: dict[str, Any]) -> Evaluator:
    operator = ast["terminalNodeText"][0]
    operand_ast, type_ast = _children(ast)
    operand = _compile(operand_ast)
    type_name = str(type_ast.get("text", ""))

    def evaluate(focus: Collection, env: Env) -> Collection:
        items = operand(focus, env)
        if operator == "as":
            return [item for item in items if is_type(item, type_name)]
        if not items:
            return []
        if len(items) > 1:
            raise FhirPathEvaluationError("'is' needs a single item")
        return [is_type(items[0], type_name)]

    return evaluate


def _compile_function(ast: dict[str, Any]) -> Evaluator:
    functn = _children(ast)[0]
    parts = _children(functn)
    name = _identifier_text(parts[0])
    params = _children(parts[1]) if len(parts) > 1 else []
    function = FUNCTIONS.get(name)
    if function is None:
        raise FhirPathSyntaxError(f"unsupported FHIRPath function {name}()")
    if len(params) not in function.arities:
        raise FhirPathSyntaxError(f"{name}() takes {' or '.join(map(str, function.arities))} argument(s)")
    compiled: list[Any] = []
    for position, param in enumerate(params):
        if position in function.type_args:
            compiled.append(_type_name_of(param))
        else:
            compiled.append(_compile(param))

    def evaluate(focus: Collection, env: Env) -> Collection:
        arguments: list[Any] = []
        for position, argument in enumerate(compiled):
            if position in function.type_args or position in function.lambdas:
                arguments.append(argument)
            else:
                arguments.append(argument(env.this, env))
        return function.implementation(focus, env, *arguments)

    return evaluate


def _type_name_of(param: dict[str, Any]) -> str:
    text = param.get("text")
    if not text:
        raise FhirPathSyntaxError("expected a type name")
    return str(text).replace("`", "")


_COMPILERS: dict[str, Callable[[dict[str, Any]], Evaluator]] = {
    "TermExpression": _compile_first_child,
    "InvocationTerm": _compile_first_child,
    "ParenthesizedTerm": _compile_first_child,
    "LiteralTerm": _compile_literal_term,
    "ExternalConstantTerm": _compile_external_constant,
    "InvocationExpression": _compile_invocation_expression,
    "MemberInvocation": _compile_member,
    "FunctionInvocation": _compile_function,
    "ThisInvocation": _compile_this,
    "IndexInvocation": _compile_index,
    "TotalInvocation": _compile_total,
    "IndexerExpression": _compile_indexer,
    "PolarityExpression": _compile_polarity,
    "MultiplicativeExpression": _compile_binary,
    "AdditiveExpression": _compile_binary,
    "UnionExpression": _compile_binary,
    "InequalityExpression": _compile_binary,
    "EqualityExpression": _compile_binary,
    "MembershipExpression": _compile_binary,
    "AndExpression": _compile_binary,
    "OrExpression": _compile_binary,
    "XorExpression": _compile_binary,
    "ImpliesExpression": _compile_binary,
    "TypeExpression": _compile_type_expression,
}
