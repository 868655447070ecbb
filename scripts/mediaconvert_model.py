#!/usr/bin/env python3
"""Validate MediaConvert CreateJob requests against botocore's own service model.

    python3 scripts/mediaconvert_model.py request.json [more.json ...]
    python3 scripts/mediaconvert_model.py manifest.jsonl
    ... | python3 scripts/mediaconvert_model.py          # JSON Lines on stdin

Each document is one of:
  * a CreateJob request as `aws mediaconvert create-job --cli-input-json`
    takes it (the model's PascalCase member names: Role, Settings, ...);
  * one entry of `Settings.Inputs[]` (FileInput, DecryptionSettings, ...),
    validated as the model's `Input` shape;
  * a sealpipe manifest record: its `mediaconvert` block is validated as an
    `Input` (a record without one has nothing to check).

A file holding one JSON document is one document; otherwise each non-empty
line is one (JSON Lines). Exit 0 when every document is valid; exit 1 with
one line per problem (`WHERE: PATH: problem`); exit 2 on unreadable input.

botocore's ParamValidator checks required members, types, unknown members
and minimum lengths/values; it does not check maximum lengths, maximum
values, enums or patterns, so those are checked here from the same model.
Patterns are the model's regular expressions, matched as Smithy does
(a match anywhere, unless the pattern anchors itself).
"""

import json
import re
import sys

import botocore.session
from botocore.validate import ParamValidator

_MODEL = None


def model():
    """The MediaConvert service model botocore ships (cached)."""
    global _MODEL
    if _MODEL is None:
        _MODEL = botocore.session.get_session().get_service_model("mediaconvert")
    return _MODEL


def create_job_shape():
    return model().operation_model("CreateJob").input_shape


def input_shape():
    return model().shape_for("Input")


def _botocore_problems(params, shape):
    report = ParamValidator().validate(params, shape)
    if not report.has_errors():
        return []
    # One line per problem: the report's own text, which names the member path.
    problems = []
    for line in report.generate_report().splitlines():
        line = line.strip()
        if line and not line.startswith("Parameter validation failed"):
            problems.append(line)
    return problems


_PATTERNS = {}


def _pattern(p):
    if p not in _PATTERNS:
        try:
            _PATTERNS[p] = re.compile(p)
        except re.error:
            _PATTERNS[p] = None  # a dialect Python cannot compile: not checked
    return _PATTERNS[p]


def _join(path, name):
    return f"{path}.{name}" if path else name


def _model_problems(value, shape, path):
    """What ParamValidator leaves out: max lengths/values, enums, patterns."""
    problems = []
    meta = shape.metadata
    t = shape.type_name
    if t == "structure" and isinstance(value, dict):
        for name, v in value.items():
            if name in shape.members:
                problems += _model_problems(v, shape.members[name], _join(path, name))
    elif t == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"Invalid length for parameter {path}, value: {len(value)}, valid max length: {meta['max']}")
        for i, v in enumerate(value):
            problems += _model_problems(v, shape.member, f"{path}[{i}]")
    elif t == "map" and isinstance(value, dict):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"Invalid length for parameter {path}, value: {len(value)}, valid max length: {meta['max']}")
        for k, v in value.items():
            problems += _model_problems(k, shape.key, f"{path} (a key)")
            problems += _model_problems(v, shape.value, _join(path, k))
    elif t == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"Invalid length for parameter {path}, value: {len(value)}, valid max length: {meta['max']}")
        enum = meta.get("enum")
        if enum and value not in enum:
            problems.append(f"Invalid value for parameter {path}, value: {value!r}, valid values: {', '.join(enum)}")
        p = meta.get("pattern")
        if p and _pattern(p) is not None and not _pattern(p).search(value):
            problems.append(f"Invalid value for parameter {path}, value: {value!r}, does not match pattern {p}")
    elif t in ("integer", "long", "float", "double") and isinstance(value, (int, float)) and not isinstance(value, bool):
        if "max" in meta and value > meta["max"]:
            problems.append(f"Invalid value for parameter {path}, value: {value}, valid max value: {meta['max']}")
    return problems


def problems_for(params, shape, root=""):
    """Every problem with `params` (member names) as `shape`; [] when valid."""
    return _botocore_problems(params, shape) + _model_problems(params, shape, root)


def classify(doc):
    """(shape, params, root) to check for one document, or None if nothing to check."""
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if "mediaconvert" in doc or ("key_provider" in doc and "output" in doc):
        block = doc.get("mediaconvert")
        return None if block is None else (input_shape(), block, "")
    if "FileInput" in doc or "DecryptionSettings" in doc:
        return (input_shape(), doc, "")
    return (create_job_shape(), doc, "")


def problems_in_document(doc):
    c = classify(doc)
    if c is None:
        return []
    shape, params, root = c
    return problems_for(params, shape, root)


def documents(text):
    """[(line number or None, document)] of a whole JSON file or JSON Lines."""
    try:
        return [(None, json.loads(text))]
    except json.JSONDecodeError:
        pass
    docs = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            docs.append((n, json.loads(line)))
    return docs


def main(argv):
    sources = argv[1:] or ["-"]
    problems = []
    for src in sources:
        try:
            text = sys.stdin.read() if src == "-" else open(src, encoding="utf-8").read()
        except OSError as e:
            print(f"{src}: {e.strerror}", file=sys.stderr)
            return 2
        name = "stdin" if src == "-" else src
        try:
            docs = documents(text) if src != "-" else [(n, json.loads(l)) for n, l in enumerate(text.splitlines(), 1) if l.strip()]
        except json.JSONDecodeError as e:
            print(f"{name}: not JSON or JSON Lines: {e}", file=sys.stderr)
            return 2
        for n, doc in docs:
            where = name if n is None else f"{name}:{n}"
            try:
                found = problems_in_document(doc)
            except ValueError as e:
                found = [str(e)]
            problems += [f"{where}: {p}" for p in found]
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
