"""Prompt templates of the two LLM pipelines (docs/method.md), one per kind and language.

Kinds: ``entity`` (open-type entities as a JSON list of ``{entity, type}``), ``pos`` (a JSON
list of ``{word, pos}`` covering every character, so it doubles as a segmentation), ``explain``
(continue a sentence that has gold entities and explain each listed entity in context) and
``describe`` (the same for a sentence without entities). Languages: zh, en, ja, ko.

The templates are YAML files shipped with the package, ``prompts/<kind>/<lang>.yaml``, with the
keys ``version``, ``system`` (the instructions), ``user`` (the message that carries one
sentence), optionally ``examples`` (worked examples, each the template's fields plus
``answer``; each becomes a user turn rendered from ``user`` and an assistant turn) and, for
``explain``, ``item`` (how one (entity, type) pair is written in the ``${entities}`` list).
Placeholders use ``${name}`` so that the braces of the JSON answers need no escaping.

Every template carries a version string that goes into the response-cache key; change the
version whenever the wording changes, so the cache provenance says which wording produced an
answer (the key also hashes the rendered text, so a forgotten bump never returns stale answers).
"""
from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from knowfree.data.sample import LANGS
from knowfree.errors import InputError

KINDS = ("entity", "pos", "explain", "describe")
# Placeholders each kind must use: a template that forgot ${sentence} would send the same
# prompt for every sentence, and the cache would happily serve one answer to all of them.
FIELDS = {
    "entity": frozenset({"sentence"}),
    "pos": frozenset({"sentence"}),
    "explain": frozenset({"sentence", "entities"}),
    "describe": frozenset({"sentence"}),
}
ITEM_FIELDS = frozenset({"entity", "type"})

Overrides = Mapping[str, "str | Path"] | str | Path | None


@dataclass(frozen=True)
class Template:
    kind: str
    lang: str
    version: str
    system: str
    user: str
    item: str | None
    examples: tuple[dict, ...]
    text: str  # the template file as written, for reading in notebooks
    source: str  # package path, override file, or "params"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def render(self, **fields) -> list[dict]:
        """Chat messages for one sentence: ``[{"role": "system", ...}, {"role": "user", ...}]``.

        ``explain`` takes ``entities`` as (entity, type) pairs or ``{"entity", "type"}`` dicts;
        type names should be readable words (``person``), not tag codes (``PER.NAM``).
        """
        values = self._values(fields)
        user = string.Template(self.user)
        messages = []
        if self.system:
            messages.append({"role": "system", "content": string.Template(self.system).substitute(values)})
        for example in self.examples:
            shown = {k: v for k, v in example.items() if k != "answer"}
            messages.append({"role": "user", "content": user.substitute(self._values(shown))})
            messages.append({"role": "assistant", "content": example["answer"]})
        messages.append({"role": "user", "content": user.substitute(values)})
        return messages

    def render_text(self, **fields) -> str:
        """The same prompt as one string, for reading in a notebook."""
        return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in self.render(**fields))

    def _values(self, fields: dict) -> dict:
        need = FIELDS[self.kind]
        missing, unknown = need - fields.keys(), fields.keys() - need
        if missing or unknown:
            raise InputError(
                f"template {self.version} takes fields {sorted(need)}; "
                f"missing {sorted(missing)}, unexpected {sorted(unknown)}",
                where=self.source, fix="pass exactly the fields the template's kind uses")
        values = dict(fields)
        if "entities" in values and not isinstance(values["entities"], str):
            values["entities"] = self._entity_lines(values["entities"])
        return {k: str(v) for k, v in values.items()}

    def _entity_lines(self, entities: Iterable) -> str:
        item = string.Template(self.item or "- ${entity} (${type})")
        lines = []
        for e in entities:
            entity, etype = (e["entity"], e["type"]) if isinstance(e, Mapping) else e
            lines.append(item.substitute(entity=entity, type=etype))
        return "\n".join(lines)


def load_template(kind: str, lang: str, overrides: Overrides = None) -> Template:
    """The template for ``kind`` in ``lang``; ``overrides`` replaces shipped templates.

    ``overrides`` (usually from the params file) is either a folder laid out like the shipped
    one (``<kind>/<lang>.yaml``; files it lacks fall back to the package), or a mapping whose
    keys are ``"<kind>.<lang>"`` or ``"<kind>"`` (the first wins) and whose values are template
    text or a path to a template file. Template text is the YAML described in the module doc,
    or plain text, taken as the user message; a template without a version gets
    ``<kind>.<lang>.custom-<hash>``.
    """
    if kind not in KINDS:
        raise InputError(f"unknown prompt kind {kind!r}", fix=f"use one of {', '.join(KINDS)}")
    if lang not in LANGS:
        raise InputError(f"no prompt templates for language {lang!r}",
                         fix=f"use one of {', '.join(LANGS)}, or pass your own template in overrides")
    found = _from_overrides(kind, lang, overrides)
    if found is None:
        ref = resources.files("knowfree.knowledge") / "prompts" / kind / f"{lang}.yaml"
        found = (ref.read_text(encoding="utf-8"), f"knowfree/knowledge/prompts/{kind}/{lang}.yaml")
    text, source = found
    return _parse(kind, lang, text, source)


def _from_overrides(kind: str, lang: str, overrides: Overrides) -> tuple[str, str] | None:
    if overrides is None:
        return None
    if isinstance(overrides, (str, Path)):
        folder = Path(overrides)
        if not folder.is_dir():
            raise InputError("prompt override folder does not exist", where=str(folder),
                             fix="point prompts at a folder holding <kind>/<lang>.yaml files, "
                                 "or give a mapping of kind to template")
        path = folder / kind / f"{lang}.yaml"
        return (path.read_text(encoding="utf-8"), str(path)) if path.is_file() else None
    for key in (f"{kind}.{lang}", kind):
        if key in overrides:
            value = overrides[key]
            if isinstance(value, Path) or ("\n" not in value and Path(value).is_file()):
                return Path(value).read_text(encoding="utf-8"), str(value)
            return value, f"params[{key!r}]"
    return None


def _parse(kind: str, lang: str, text: str, source: str) -> Template:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        doc = None  # not YAML at all: plain prompt text
    if not (isinstance(doc, dict) and "user" in doc):
        doc = {"user": text}
    if "version" not in doc:
        doc["version"] = f"{kind}.{lang}.custom-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:8]}"
    unknown_keys = doc.keys() - {"version", "system", "user", "item", "examples"}
    if unknown_keys:
        raise InputError(f"unknown template keys {sorted(unknown_keys)}", where=source,
                         fix="a template has only version, system, user, examples and item")
    examples = []
    for example in doc.get("examples") or ():
        if not isinstance(example, dict) or example.keys() != FIELDS[kind] | {"answer"}:
            raise InputError(f"a worked example of the {kind} template is {example!r}", where=source,
                             fix=f"give each example exactly the keys {sorted(FIELDS[kind] | {'answer'})}")
        answer = example["answer"]  # an unquoted JSON answer arrives parsed: write it back as text
        examples.append({**example, "answer": answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)})
    examples = tuple(examples)
    user, system, item = str(doc["user"]), str(doc.get("system") or ""), doc.get("item")
    for name, part, allowed, required in (
            ("user", user, FIELDS[kind], FIELDS[kind]),
            ("system", system, FIELDS[kind], frozenset()),
            ("item", item or "", ITEM_FIELDS, ITEM_FIELDS if item else frozenset())):
        tpl = string.Template(part)
        used = set(tpl.get_identifiers())
        if not tpl.is_valid() or used - allowed or required - used:
            raise InputError(
                f"{name} of the {kind} template uses placeholders {sorted(used)}; it must use "
                f"{sorted(required)} and may use {sorted(allowed)}", where=source,
                fix="write placeholders as ${name}, and a literal dollar sign as $$")
    return Template(kind=kind, lang=lang, version=str(doc["version"]), system=system, user=user,
                    item=item, examples=examples, text=text, source=source)
