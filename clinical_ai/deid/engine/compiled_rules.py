"""Rules compiled once per configuration into matchers that read a resource's index instead of walking it.

The interpreted engine evaluates each rule's FHIRPath on each resource: ``nodesByType('Extension').where(...)``
walks every element of the resource, three times for three such rules; ``nodesByType('Reference').reference``
evaluates ``reference`` through the general evaluator (environment, ``%resource``, de-duplication) on every
Reference. Here each rule's path is parsed once, when the engine is built, into one of a few shapes:

* ``Resource`` / ``Binary`` (the resource itself), ``nodesByType('T')`` / ``nodesByName('n')`` with at most
  one member after it: read from the resource's index, the member taken directly from the children;
* a path of members (``Bundle.entry.fullUrl``, ``Location.name``): children by name, from the resource;
* ``nodesByType('T')`` or ``nodesByName('n')`` followed by anything (``.where(url = '...')``): the head read
  from the index, the rest evaluated by the general evaluator on what it gives;
* anything else: the general evaluator, as before.

The index of each resource is filled while the tree is built (:mod:`compiled_tree`) and rebuilt when a
rule changed the tree's shape (``substitute``, dropped attachment data: ``MethodContext.structure_changes``),
so every answer is the one the interpreted engine gives on the tree as it is at that moment.
"""

from __future__ import annotations

from collections.abc import Callable

from clinical_ai.deid.engine.compiled_tree import ResourceIndex
from clinical_ai.deid.engine.fhirpath import CompiledExpression, indexed_head, member_path, member_step
from clinical_ai.deid.engine.fhirpath_functions import Env, Evaluator
from clinical_ai.deid.engine.fhirpath_values import Collection
from clinical_ai.deid.engine.methods import MethodContext
from clinical_ai.deid.engine.nodes import Node

__all__ = ["Matcher", "TreeState", "rule_matcher"]


class TreeState:
    """One input's tree and the index of each of its resources, true to the tree's current shape."""

    __slots__ = ("_context", "_indexes", "_pinned")

    def __init__(self, indexes: list[ResourceIndex], context: MethodContext) -> None:
        self._context = context
        version = context.structure_changes
        # id(resource) -> (resource, the structure_changes count it was built at, index)
        self._indexes: dict[int, tuple[Node, int, ResourceIndex]] = {
            id(index.resource): (index.resource, version, index) for index in indexes
        }
        self._pinned: dict[int, tuple[Node, ResourceIndex]] = {}

    def index(self, resource: Node) -> ResourceIndex:
        """The index of ``resource`` as the tree is now."""
        version = self._context.structure_changes
        entry = self._indexes.get(id(resource))
        if entry is not None and entry[0] is resource and entry[1] == version:
            return entry[2]
        index = ResourceIndex.of(resource)
        self._indexes[id(resource)] = (resource, version, index)
        return index

    def rule_index(self, resource: Node) -> ResourceIndex:
        """The index the lookup rules of ``resource`` read: taken once, at the first of them, and kept for
        the resource's later rules (as the reference tool and the interpreted engine do)."""
        pinned = self._pinned.get(id(resource))
        if pinned is not None and pinned[0] is resource:
            return pinned[1]
        index = self.index(resource)
        self._pinned[id(resource)] = (resource, index)
        return index

    def nested(self, resource: Node) -> list[Node]:
        """Resources directly inside ``resource``, as the tree is now."""
        return list(self.index(resource).nested)


Matcher = Callable[[Node, TreeState], list[Node]]


def rule_matcher(
    kind: str,
    key: str,
    member: CompiledExpression | None,
    expression: CompiledExpression | None,
) -> Matcher:
    """The nodes a rule selects in a resource, as ``StructuredAnonymizer``'s interpreted ``_match``."""
    if kind == "resource":
        return _whole_resource
    if kind in ("type", "name"):
        return _lookup_matcher(kind == "type", key, member)
    assert expression is not None
    names = member_path(expression.text)
    if names is not None:
        return _path_matcher(names)
    head = indexed_head(expression.text)
    if head is not None:
        return _head_matcher(
            head.function == "nodesByType", head.argument, head.rest, head.empty_gives_nothing
        )
    return lambda resource, state: expression.select_nodes(resource)


def _whole_resource(resource: Node, state: TreeState) -> list[Node]:
    return [resource]


def _lookup_matcher(by_type: bool, key: str, member: CompiledExpression | None) -> Matcher:
    def found(resource: Node, state: TreeState) -> list[Node]:
        index = state.rule_index(resource)
        return (index.by_type if by_type else index.by_name).get(key, [])

    if member is None:
        return lambda resource, state: list(found(resource, state))
    names = member_path(member.text)
    if names is None or len(names) != 1:
        return lambda resource, state: [
            selected for node in found(resource, state) for selected in member.select_nodes(node)
        ]
    name = names[0]
    return lambda resource, state: [
        selected for node in found(resource, state) for selected in member_step([node], name)
    ]


def _distinct(items: list[Node]) -> list[Node]:
    if len(items) < 2:
        return items
    seen: set[int] = set()
    distinct: list[Node] = []
    for item in items:
        if id(item) not in seen:
            seen.add(id(item))
            distinct.append(item)
    return distinct


def _path_matcher(names: tuple[str, ...]) -> Matcher:
    def match(resource: Node, state: TreeState) -> list[Node]:
        items = [resource]
        for name in names:
            items = member_step(items, name)
            if not items:
                return items
        return _distinct(items)

    return match


def _head_matcher(by_type: bool, argument: str, rest: Evaluator, empty_gives_nothing: bool) -> Matcher:
    def match(resource: Node, state: TreeState) -> list[Node]:
        index = state.index(resource)
        head = (
            index.fhirpath_nodes_by_type(resource, argument)
            if by_type
            else index.fhirpath_nodes_by_name(resource, argument)
        )
        if not head and empty_gives_nothing:
            return []
        focus: Collection = [resource]
        env = Env(this=focus, resource=resource, root_resource=resource.root(), context=focus)
        return _distinct([item for item in rest(list(head), env) if isinstance(item, Node)])

    return match
