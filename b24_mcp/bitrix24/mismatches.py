"""Answers as real portals send them: a field that matches no type it is known to take is set aside and reported.

Portals and the docs disagree now and then, and one such field in one of a hundred messages must not fail a call.
`accept` validates a result against its model; each field in the way is taken out of its object and listed as a
`Mismatch` with its value as sent, and an element of a list that lacks a usable id is taken out whole, the same way.
Nothing is rewritten, and what stays validates against the tool's output schema.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Union

from pydantic import BaseModel, TypeAdapter, ValidationError

MAX_PASSES = 4  # a pass sets aside every field pydantic names; the next ones only catch what that uncovers


class Unusable(Exception):
    """A required part of the answer is not usable (the answer's own shape, or an object's id outside a list)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def accept(result_type: Any, raw: Any, method: str) -> tuple[Any, list[dict[str, Any]]]:
    """`raw` validated as `result_type`, with what does not fit set aside: (value, report of it as sent)."""
    adapter = _adapter(result_type)
    report: list[dict[str, Any]] = []
    for _ in range(MAX_PASSES):
        try:
            return adapter.validate_python(raw), report
        except ValidationError as err:
            raw = _set_aside(result_type, raw, err, method, report)
    return adapter.validate_python(raw), report  # still failing: the caller names the fields


def _set_aside(result_type: Any, raw: Any, err: ValidationError, method: str, report: list[dict[str, Any]]) -> Any:
    """Take every field or list element that the errors name out of `raw`, recording each in `report`."""
    chosen: dict[tuple[int, int | str], tuple[_Step, str]] = {}
    unusable: list[str] = []
    walks = [(problem, *_walk(result_type, raw, problem["loc"])) for problem in err.errors(include_url=False)]
    # A union of an object and PHP's empty array reports both branches: the one the value is not (a list for an
    # object) says nothing when the other branch names a field inside it.
    inside = [steps[-1].path for _, steps, other in walks if steps and not other]
    for problem, steps, other_branch in walks:
        if other_branch and steps and any(p.startswith(steps[-1].path) for p in inside):
            continue
        expected = ""
        if problem["type"] == "missing":
            expected = f"an object with {problem['loc'][-1]}"
        elif steps and steps[-1].required:
            expected = f"an object whose {steps[-1].key} is {type_words(steps[-1].annotation)}"
        elif steps and problem["type"] == "value_error":
            expected = str(problem["ctx"].get("error", problem["msg"]))
        elif steps:
            expected = type_words(steps[-1].annotation)
        # the innermost part that may go: the field itself, or else the optional field or list element holding it
        removable = [s for s in steps if not s.required] if expected.startswith("an object") else steps[-1:]
        if not removable or removable[-1].required:
            unusable.append(f"{_path(problem['loc']) or 'result'}: {problem['msg']}")
            continue
        step = removable[-1]
        chosen[(id(step.holder), step.key)] = (step, expected)
    if unusable:
        raise Unusable(unusable[:5])
    # Fields first, then list elements from the last, so that every index still names what was sent.
    for step, expected in sorted(chosen.values(), key=lambda c: (isinstance(c[0].key, int), -_index(c[0].key))):
        _note(report, method, step.path, expected, step.holder.pop(step.key))
    report.sort(key=_in_answer_order)
    return raw


def _index(key: int | str) -> int:
    return key if isinstance(key, int) else 0


def _note(report: list[dict[str, Any]], method: str, path: str, expected: str, value: Any) -> None:
    report.append({"method": method, "path": path, "expected": expected, "value": value})


def _in_answer_order(entry: dict[str, Any]) -> list[tuple[int, int | str]]:
    """result.messages[10].date after result.messages[9].date."""
    parts = re.split(r"[.\[\]]+", entry["path"])
    return [(0, int(part)) if part.isdigit() else (1, part) for part in parts if part]


@dataclass
class _Step:
    """One step into the answer: a model's field (`key` a name) or a list's element (`key` an index)."""

    holder: Any  # the dict or list the step goes into
    key: int | str
    path: str
    annotation: Any
    required: bool  # a required field; a list element is never required


def _walk(result_type: Any, raw: Any, loc: tuple[int | str, ...]) -> tuple[list[_Step], bool]:
    """The model fields and the list elements of models that lead to an error's location, outermost first, and
    whether the error is about a union's branch that the value is not (an object's error for a list)."""
    steps: list[_Step] = []
    node, kinds, path = raw, _flat([result_type]), "result"
    for segment in loc:
        branch = [k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel) and k.__name__ == segment]
        if branch and isinstance(segment, str) and len(kinds) > 1:  # the model branch of a union
            if not isinstance(node, dict):
                return steps, True
            kinds = branch
            continue
        if isinstance(segment, str) and segment.startswith("list[") and len(kinds) > 1:  # its list branch
            if not isinstance(node, list):
                return steps, True
            kinds = [k for k in kinds if typing.get_origin(k) is list]
            continue
        model = next((k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)), None)
        if model is not None and isinstance(node, dict) and isinstance(segment, str) and segment in node:
            info = model.model_fields.get(segment)
            annotation = info.annotation if info is not None else Any
            path = f"{path}.{segment}"
            steps.append(_Step(node, segment, path, annotation, info is not None and info.is_required()))
            node, kinds = node[segment], _flat([annotation])
            continue
        items = _flat([typing.get_args(k)[0] for k in kinds if typing.get_origin(k) is list and typing.get_args(k)])
        if items and isinstance(node, list) and isinstance(segment, int) and 0 <= segment < len(node):
            path = f"{path}[{segment}]"
            if any(isinstance(t, type) and issubclass(t, BaseModel) for t in items):
                steps.append(_Step(node, segment, path, items[0], required=False))
            node, kinds = node[segment], items
            continue
        break  # a union's branch name, or a part the data does not have: the step so far holds the error
    return steps, False


def _flat(annotations: list[Any]) -> list[Any]:
    """The types a value may take, unions and Annotated unwrapped."""
    out: list[Any] = []
    for annotation in annotations:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            out.extend(_flat([typing.get_args(annotation)[0]]))
        elif origin is Union or origin is types.UnionType:
            out.extend(_flat(list(typing.get_args(annotation))))
        else:
            out.append(annotation)
    return out


_WORDS = {str: "string", int: "integer", bool: "boolean", float: "number", dict: "object", list: "array"}


def type_words(annotation: Any) -> str:
    """A field's documented and observed types in words, as the report shows them: "string or null"."""
    words: list[str] = []
    for kind in _flat([annotation]):
        if kind is type(None):
            word = "null"
        elif isinstance(kind, type) and issubclass(kind, BaseModel):
            word = "object"
        else:
            word = _WORDS.get(typing.get_origin(kind) or kind, "any value")
        if word not in words:
            words.append(word)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _path(loc: tuple[int | str, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


_adapters: dict[Any, TypeAdapter[Any]] = {}


def _adapter(result_type: Any) -> TypeAdapter[Any]:
    if result_type not in _adapters:
        _adapters[result_type] = TypeAdapter(result_type)
    return _adapters[result_type]
