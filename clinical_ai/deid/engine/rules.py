"""The structured de-identification engine: FHIRPath rules and methods over FHIR R4 JSON.

:class:`StructuredAnonymizer` follows the reference anonymizer's processing model, so configurations and
outputs carry over:

* every resource in the input (the input itself, bundle entries, contained resources, depth first) is
  processed with the rules that apply to its type, in configuration order;
* a rule selects nodes; its method is applied to each node and then to the node's descendants (not
  into nested resources); a node processed once is never processed again ("first matching rule wins");
* a resource's operations (its own and its nested resources') become ``meta.security`` labels, except
  on contained resources, whose container carries them;
* finally every element left without a value or children is removed.

Our additions: ``scrub`` (free text, batched into one call to the :class:`TextScrubber` per input),
a per-patient date shift when a :class:`PatientContext` is given, pseudonyms reported to a
:class:`PseudonymSink`, and ``Bundle.entry.fullUrl`` hashed like a reference so links still resolve.
"""

from __future__ import annotations

import logging
import re
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any, Literal

from clinical_ai.deid.engine import methods
from clinical_ai.deid.engine.compiled_rules import Matcher, TreeState, rule_matcher
from clinical_ai.deid.engine.compiled_tree import (
    ResourceIndex,
    build_tree,
    collector_paused,
    json_child,
    pruned_json,
    release_tree,
)
from clinical_ai.deid.engine.config import (
    AnonymizerConfig,
    Method,
    Parameters,
    ProcessingErrors,
    Rule,
    load_config,
    parse_config,
)
from clinical_ai.deid.engine.fhirpath import (
    CompiledExpression,
    FhirPathEvaluationError,
    compile_expression,
    member_path,
)
from clinical_ai.deid.engine.methods import (
    SECURITY_LABELS,
    MethodContext,
    Operation,
    Outcome,
    ProcessingError,
    Processor,
    ScrubTarget,
)
from clinical_ai.deid.engine.nodes import Node, add_json_child, build_resource, prune_empty, to_json
from clinical_ai.deid.engine.scrub import scrub
from clinical_ai.deid.engine.substitute import substitute
from clinical_ai.deid.engine.types import FreeTextDates, PatientContext, PseudonymSink, TextScrubber

logger = logging.getLogger(__name__)

__all__ = ["InvalidResourceError", "ProcessingError", "StructuredAnonymizer"]

# The reference tool's shortcuts: a bare nodesByType/nodesByName, optionally with one member after it,
# is answered from a per-resource index instead of evaluating FHIRPath.
_TYPE_RULE = re.compile(r"^nodesByType\(['\"](?P<key>[A-Za-z0-9]+)['\"]\)(\.(?P<member>[A-Za-z0-9]+))?$")
_NAME_RULE = re.compile(r"^nodesByName\(['\"](?P<key>[A-Za-z0-9]+)['\"]\)(\.(?P<member>[A-Za-z0-9]+))?$")
_RESOURCE_PREFIX = re.compile(r"^(?P<type>[A-Z][a-zA-Z]*)?(\.)?(?P<expression>.*?)$", re.DOTALL)
_GENERAL_TYPES = frozenset({"", "Resource", "DomainResource"})

# One default key per process, as the reference tool does when a key is not configured.
_PROCESS_DEFAULT_KEY = secrets.token_hex(16)


PROCESSORS: dict[Method, Processor] = {
    Method.KEEP: methods.keep,
    Method.REDACT: methods.redact,
    Method.DATE_SHIFT: methods.date_shift,
    Method.CRYPTO_HASH: methods.crypto_hash,
    Method.ENCRYPT: methods.encrypt,
    Method.SUBSTITUTE: substitute,
    Method.PERTURB: methods.perturb,
    Method.GENERALIZE: methods.generalize,
    Method.SCRUB: scrub,
}


def _free_text_dates(config: AnonymizerConfig) -> FreeTextDates:
    """Dates in free text follow the structured ones: only the year where the configuration's first rule
    for ``dateTime`` values redacts them keeping partial dates (``safe-harbor``), shifted otherwise."""
    for rule in config.rules:
        lookup = _TYPE_RULE.match(rule.path)
        if lookup and lookup.group("key") == "dateTime" and not lookup.group("member"):
            partial = config.parameters.enable_partial_dates_for_redact
            return "year" if rule.method is Method.REDACT and partial else "shift"
    return "shift"


class InvalidResourceError(ValueError):
    """The input is not a FHIR resource (a JSON object with a ``resourceType``)."""


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    rule: Rule
    resource_type: str  # "" or Resource/DomainResource: every resource
    kind: Literal["type", "name", "resource", "expression"]
    key: str = ""  # the type or name of a lookup rule
    member: CompiledExpression | None = None  # the member after a lookup
    expression: CompiledExpression | None = None
    processor: Processor = field(default=PROCESSORS[Method.KEEP])
    matcher: Matcher | None = None  # the compiled path's way to the same nodes (compiled_rules)
    member_name: str = ""  # the member after a lookup, when it is a plain (lower-case) element name


@dataclass(slots=True)
class _Run:
    """State of one ``anonymize`` call."""

    context: MethodContext
    operations: dict[int, set[Operation]] = field(default_factory=dict)  # by id() of resource node


class StructuredAnonymizer:
    """Applies a de-identification configuration to FHIR R4 resources and bundles."""

    def __init__(
        self,
        config: AnonymizerConfig | Mapping[str, Any] | str | Path,
        *,
        secrets_override: Mapping[str, str] | None = None,
        today: Callable[[], date] = date.today,
        compiled: bool = True,
    ) -> None:
        """``compiled=False`` runs the interpreted engine (each rule's FHIRPath evaluated on each resource,
        the tree built and written element by element): the reference the compiled one is tested and
        benchmarked against; both give the same output."""
        if isinstance(config, AnonymizerConfig):
            parsed = config
        elif isinstance(config, Mapping):
            parsed = parse_config(config)
        else:
            parsed = load_config(config)
        parsed = parsed.with_secrets(secrets_override)
        self._config = replace(parsed, parameters=self._with_default_keys(parsed))
        self._today = today
        self._compiled = compiled
        self._rules = tuple(_compile_rule(rule) for rule in self._config.rules)
        self._free_text_dates = _free_text_dates(self._config)
        self._rules_by_type: dict[str | None, tuple[_CompiledRule, ...]] = {}
        self._generalize_cases = {
            rule.index: [
                (compile_expression(case.condition), compile_expression(case.replacement))
                for case in rule.cases
            ]
            for rule in self._config.rules
            if rule.method is Method.GENERALIZE
        }

    @property
    def config(self) -> AnonymizerConfig:
        return self._config

    def anonymize(
        self,
        resource: Mapping[str, Any],
        *,
        patient: PatientContext | None = None,
        scrubber: TextScrubber | None = None,
        sink: PseudonymSink | None = None,
        scope_key: str | None = None,
    ) -> dict[str, Any]:
        """A de-identified copy of ``resource`` (the input is not changed).

        ``patient``: date shifts use ``patient.date_shift_days`` (one offset for all of the patient's
        dates) and the scrubber gets the patient's identifiers. ``scrubber``: receives every ``scrub``
        text in one call; without one, those texts are removed. ``sink``: told each cryptoHash
        pseudonym and its original. ``scope_key``: the file or folder name when ``dateShiftScope`` is
        ``file`` or ``folder``.

        Raises :class:`InvalidResourceError` for input that is not a resource, and
        :class:`ProcessingError` when a node cannot be processed and ``processingErrors`` is ``raise``.
        """
        if not isinstance(resource, Mapping) or not isinstance(resource.get("resourceType"), str):
            raise InvalidResourceError("expected a FHIR resource: a JSON object with a string resourceType")
        if not self._compiled:
            return self._anonymize_tree(
                build_resource(resource), None, resource, patient, scrubber, sink, scope_key
            )
        with collector_paused():
            # The tree is freed when this call returns, before the collector resumes.
            return self._anonymize_compiled(resource, patient, scrubber, sink, scope_key)

    def _anonymize_compiled(
        self,
        resource: Mapping[str, Any],
        patient: PatientContext | None,
        scrubber: TextScrubber | None,
        sink: PseudonymSink | None,
        scope_key: str | None,
    ) -> dict[str, Any]:
        root, indexes = build_tree(resource)
        try:
            return self._anonymize_tree(root, indexes, resource, patient, scrubber, sink, scope_key)
        finally:
            if root.children and root.children[0].parent is not None:
                release_tree(root)  # not written (an error, or skipped): pruned_json unlinks what it writes

    def _anonymize_tree(
        self,
        root: Node,
        indexes: list[ResourceIndex] | None,
        resource: Mapping[str, Any],
        patient: PatientContext | None,
        scrubber: TextScrubber | None,
        sink: PseudonymSink | None,
        scope_key: str | None,
    ) -> dict[str, Any]:
        """``anonymize`` on the tree of ``resource``: compiled when the tree's ``indexes`` are given."""
        context = MethodContext(
            parameters=self._config.parameters,
            visited=set(),
            resource=root,
            today=self._today(),
            patient=patient,
            sink=sink,
            scope_key=scope_key,
            generalize_cases=self._generalize_cases,
            hashes={} if indexes is not None else None,
            reference_hashes={} if indexes is not None else None,
        )
        run = _Run(context)
        state = TreeState(indexes, context) if indexes is not None else None
        try:
            if state is not None:
                self._process_tree_compiled(root, run, state)
            else:
                self._process_tree(root, run)
            text_patient = patient
            if patient is not None and patient.free_text_dates != self._free_text_dates:
                text_patient = replace(patient, free_text_dates=self._free_text_dates)
            self._flush_scrub_targets(run, scrubber, text_patient)
        except (ProcessingError, FhirPathEvaluationError) as error:
            context.scrub_targets.clear()  # their write-backs hold the context: a cycle
            if self._config.processing_errors is ProcessingErrors.SKIP:
                logger.warning("de-identification skipped a %s: %s", root.fhir_type, type(error).__name__)
                return _empty_resource(str(resource["resourceType"]))
            if isinstance(error, FhirPathEvaluationError):
                raise ProcessingError(str(error)) from error
            raise
        context.scrub_targets.clear()
        if state is not None:
            self._label_compiled(root, run, state)
            return pruned_json(root)
        self._label(root, run)
        prune_empty(root)
        return to_json(root)

    # --- processing -------------------------------------------------------------------------------------

    def _process_tree(self, resource: Node, run: _Run) -> None:
        run.operations[id(resource)] = self._process_resource(resource, run)
        for nested in _nested_resources(resource):
            self._process_tree(nested, run)

    def _process_resource(self, resource: Node, run: _Run) -> set[Operation]:
        context = run.context
        context.resource = resource
        operations: set[Operation] = set()
        index: _NodeIndex | None = None
        for compiled in self._rules_for(resource.fhir_type):
            if compiled.kind in ("type", "name") and index is None:
                index = _NodeIndex.build(resource)
            for node in self._match(compiled, resource, index):
                operations |= self._process_node(node, compiled, context)
        return operations

    def _match(self, compiled: _CompiledRule, resource: Node, index: _NodeIndex | None) -> list[Node]:
        if compiled.kind == "resource":
            return [resource]
        if compiled.kind in ("type", "name"):
            assert index is not None
            found = (index.by_type if compiled.kind == "type" else index.by_name).get(compiled.key, [])
            if compiled.member is None:
                return list(found)
            member = compiled.member
            return [selected for node in found for selected in member.select_nodes(node)]
        assert compiled.expression is not None
        return compiled.expression.select_nodes(resource)

    def _process_node(self, node: Node, compiled: _CompiledRule, context: MethodContext) -> set[Operation]:
        if node in context.visited:
            return set()
        try:
            outcome = compiled.processor(node, compiled.rule, context)
        except ProcessingError:
            if self._config.processing_errors is not ProcessingErrors.KEEP:
                raise
            logger.warning(
                "rule %d (%s) left a node unprocessed after an error",
                compiled.rule.index,
                compiled.rule.method,
            )
            outcome = Outcome(claimed=False)
        if outcome.claimed:
            context.visited.add(node)
        operations = set(outcome.operations)
        for child in list(node.children):
            if not child.is_resource:
                operations |= self._process_node(child, compiled, context)
        return operations

    # --- processing, compiled (the same steps, nodes found through the resources' indexes) --------------

    def _process_tree_compiled(self, resource: Node, run: _Run, state: TreeState) -> None:
        run.operations[id(resource)] = self._process_resource_compiled(resource, run, state)
        for nested in state.nested(resource):
            self._process_tree_compiled(nested, run, state)

    def _process_resource_compiled(self, resource: Node, run: _Run, state: TreeState) -> set[Operation]:
        context = run.context
        context.resource = resource
        operations: set[Operation] = set()
        index: ResourceIndex | None = None  # the lookup rules' index, taken at the first of them
        for compiled in self._rules_for(resource.fhir_type):
            if compiled.kind in ("type", "name") and (compiled.member is None or compiled.member_name):
                if index is None:
                    index = state.rule_index(resource)
                found = (index.by_type if compiled.kind == "type" else index.by_name).get(compiled.key)
                if not found:
                    continue
                nodes = _members(found, compiled.member_name) if compiled.member_name else list(found)
            else:
                assert compiled.matcher is not None
                nodes = compiled.matcher(resource, state)
            for node in nodes:
                self._apply(node, compiled, context, operations)
        return operations

    def _apply(
        self, node: Node, compiled: _CompiledRule, context: MethodContext, operations: set[Operation]
    ) -> None:
        """``_process_node``, adding to ``operations`` instead of returning a new set per node."""
        if node in context.visited:
            return
        try:
            outcome = compiled.processor(node, compiled.rule, context)
        except ProcessingError:
            if self._config.processing_errors is not ProcessingErrors.KEEP:
                raise
            logger.warning(
                "rule %d (%s) left a node unprocessed after an error",
                compiled.rule.index,
                compiled.rule.method,
            )
            outcome = Outcome(claimed=False)
        if outcome.claimed:
            context.visited.add(node)
        if outcome.operations:
            operations.update(outcome.operations)
        if node.children:
            for child in list(node.children):
                if not child.is_resource:
                    self._apply(child, compiled, context, operations)

    def _label_compiled(self, resource: Node, run: _Run, state: TreeState) -> set[Operation]:
        operations = set(run.operations.get(id(resource), set()))
        for nested in state.nested(resource):
            operations |= self._label_compiled(nested, run, state)
        if operations and resource.name != "contained":
            add_security_labels(resource, operations, json_child)
        return operations

    def _rules_for(self, resource_type: str | None) -> tuple[_CompiledRule, ...]:
        rules = self._rules_by_type.get(resource_type)
        if rules is None:
            rules = tuple(
                compiled
                for compiled in self._rules
                if compiled.resource_type in _GENERAL_TYPES or compiled.resource_type == resource_type
            )
            self._rules_by_type[resource_type] = rules
        return rules

    # --- free text ------------------------------------------------------------------------------------

    def _flush_scrub_targets(
        self, run: _Run, scrubber: TextScrubber | None, patient: PatientContext | None
    ) -> None:
        targets: list[ScrubTarget] = run.context.scrub_targets
        if not targets:
            return
        if scrubber is None:
            results: list[str | None] = [None] * len(targets)
        else:
            scrubbed = scrubber.scrub_texts([target.item for target in targets], patient=patient)
            if len(scrubbed) != len(targets):
                raise ProcessingError(f"the text scrubber returned {len(scrubbed)} texts for {len(targets)}")
            results = list(scrubbed)
        for target, result in zip(targets, results, strict=True):
            target.write_back(result)
            if result != target.item.text:
                run.operations.setdefault(id(target.resource), set()).add(Operation.REDACT)

    # --- labels ---------------------------------------------------------------------------------------

    def _label(self, resource: Node, run: _Run) -> set[Operation]:
        operations = set(run.operations.get(id(resource), set()))
        for nested in _nested_resources(resource):
            operations |= self._label(nested, run)
        if operations and resource.name != "contained":
            add_security_labels(resource, operations)
        return operations

    @staticmethod
    def _with_default_keys(config: AnonymizerConfig) -> Parameters:
        parameters = config.parameters
        used_methods = {rule.method for rule in config.rules}
        changes: dict[str, Any] = {}
        if not parameters.date_shift_key:
            changes["date_shift_key"] = uuid.uuid4().hex
        if not parameters.crypto_hash_key:
            changes["crypto_hash_key"] = _PROCESS_DEFAULT_KEY
            if Method.CRYPTO_HASH in used_methods:
                logger.warning(
                    "no cryptoHashKey configured: hashes use a random per-process key and are not stable"
                )
        if not parameters.encrypt_key:
            changes["encrypt_key"] = _PROCESS_DEFAULT_KEY
            if Method.ENCRYPT in used_methods:
                logger.warning("no encryptKey configured: encrypted values use a random per-process key")
        return replace(parameters, **changes)


@dataclass(slots=True)
class _NodeIndex:
    """Nodes of one resource by FHIR type and by name (the resource itself excluded, nested resources
    included as nodes but not entered), as the reference tool indexes them."""

    by_type: dict[str, list[Node]]
    by_name: dict[str, list[Node]]

    @classmethod
    def build(cls, resource: Node) -> _NodeIndex:
        by_type: dict[str, list[Node]] = {}
        by_name: dict[str, list[Node]] = {}
        stack = list(reversed(resource.children))
        while stack:
            node = stack.pop()
            if node.fhir_type:
                by_type.setdefault(node.fhir_type, []).append(node)
            by_name.setdefault(node.name, []).append(node)
            if not node.is_resource:
                stack.extend(reversed(node.children))
        return cls(by_type, by_name)


def _compile_rule(rule: Rule) -> _CompiledRule:
    compiled = _parse_rule(rule)
    matcher = rule_matcher(compiled.kind, compiled.key, compiled.member, compiled.expression)
    names = member_path(compiled.member.text) if compiled.member is not None else None
    plain = names[0] if names is not None and len(names) == 1 and names[0][:1].islower() else ""
    return replace(compiled, matcher=matcher, member_name=plain)


def _parse_rule(rule: Rule) -> _CompiledRule:
    processor = PROCESSORS[rule.method]
    prefix = _RESOURCE_PREFIX.match(rule.path)
    resource_type = prefix.group("type") or "" if prefix else ""
    expression_text = prefix.group("expression") if prefix else rule.path
    lookup = _TYPE_RULE.match(rule.path)
    if lookup is not None or (lookup := _NAME_RULE.match(rule.path)) is not None:
        kind: Literal["type", "name"] = "type" if rule.path.startswith("nodesByType") else "name"
        member_text = lookup.group("member")
        return _CompiledRule(
            rule=rule,
            resource_type="",
            kind=kind,
            key=lookup.group("key"),
            member=compile_expression(member_text) if member_text else None,
            processor=processor,
        )
    if rule.path == resource_type:
        return _CompiledRule(rule=rule, resource_type=resource_type, kind="resource", processor=processor)
    return _CompiledRule(
        rule=rule,
        resource_type=resource_type,
        kind="expression",
        expression=compile_expression(expression_text or rule.path),
        processor=processor,
    )


def _members(parents: list[Node], name: str) -> list[Node]:
    """``parents.name`` for a plain element name, as FHIRPath's member invocation (``member_step``)."""
    selected: list[Node] = []
    for parent in parents:
        matched = [child for child in parent.children if child.name == name]
        if not matched:
            matched = [child for child in parent.children if child.json_key == name]
        selected.extend(matched)
    return selected


def _nested_resources(resource: Node) -> list[Node]:
    """Resources directly inside ``resource`` (bundle entries, contained), in document order."""
    found: list[Node] = []
    stack = list(reversed(resource.children))
    while stack:
        node = stack.pop()
        if node.is_resource:
            found.append(node)
            continue
        stack.extend(reversed(node.children))
    return found


def add_security_labels(
    resource: Node,
    operations: set[Operation],
    add_child: Callable[[Node, str, Any], list[Node]] = add_json_child,
) -> None:
    """Add the ``meta.security`` coding of each operation, unless the code is already there."""
    meta = resource.first_child("meta")
    if meta is None:
        meta = add_child(resource, "meta", {})[0]
        # Keep meta near the top, after id, where FHIR JSON usually has it.
        resource.children.remove(meta)
        position = next((i + 1 for i, child in enumerate(resource.children) if child.name == "id"), 0)
        resource.children.insert(position, meta)
    existing = {
        str(code.value).lower()
        for coding in meta.children_named("security")
        if (code := coding.first_child("code")) is not None and code.value is not None
    }
    for operation, label in SECURITY_LABELS.items():
        if operation in operations and label["code"].lower() not in existing:
            add_child(meta, "security", [dict(label)])


def _empty_resource(resource_type: str) -> dict[str, Any]:
    """What ``processingErrors: skip`` returns: the resource type and a REDACTED label only."""
    return {"resourceType": resource_type, "meta": {"security": [dict(SECURITY_LABELS[Operation.REDACT])]}}
