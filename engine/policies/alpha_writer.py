"""A fast writer for alpha packs whose layout matches a known one (the P1.2 hot path).

A sweep writes hundreds of alpha packs that differ from the authority only in their numbers.
``AlphaPackWriter`` dumps the layout once with a placeholder per alpha and fills in each alpha
exactly as ``dump_yaml`` would write it (PyYAML's float representation), so its output is
byte-identical to ``dump_yaml(doc)``; a document of another layout goes through ``dump_yaml``.
"""

from __future__ import annotations

import copy
import re

from engine.policies.authoring import dump_yaml

_SLOT = re.compile(r"'@@(\d+|V)@@'")
VERSION_MAX = 40  # a short version string is never folded, so it reads the same under any key


def yaml_float(value: float) -> str:
    """PyYAML's SafeRepresenter.represent_float, for finite values."""
    text = repr(float(value)).lower()
    if "." not in text and "e" in text:
        text = text.replace("e", ".0e", 1)
    return text


def _layout(doc: dict) -> tuple:
    return (doc.get("notes"), tuple(doc),
            tuple((iso, block.get("notes"), tuple(e["tzid"] for e in block["tzid_alphas"]))
                  for iso, block in doc["countries"].items()))


class AlphaPackWriter:
    def __init__(self, template_doc: dict) -> None:
        self.layout = _layout(template_doc)
        slotted = copy.deepcopy(template_doc)
        slotted["version"] = "@@V@@"
        n = 0
        for block in slotted["countries"].values():
            for entry in block["tzid_alphas"]:
                entry["alpha"] = f"@@{n}@@"
                n += 1
        text = dump_yaml(slotted).decode("utf-8")
        self.parts = _SLOT.split(text)  # text, slot, text, slot, ..., text
        self.slots = n

    def dump(self, doc: dict) -> bytes:
        version = doc.get("version")
        if _layout(doc) != self.layout or not isinstance(version, str) or len(version) > VERSION_MAX:
            return dump_yaml(doc)
        alphas = [yaml_float(e["alpha"]) for block in doc["countries"].values() for e in block["tzid_alphas"]]
        version_text = dump_yaml({"v": version}).decode("utf-8")[3:-1]
        out = list(self.parts)
        for i in range(1, len(out), 2):
            out[i] = version_text if out[i] == "V" else alphas[int(out[i])]
        return "".join(out).encode("utf-8")


_WRITERS: dict[tuple, AlphaPackWriter] = {}


def writer_for(doc: dict) -> AlphaPackWriter:
    """The writer of this document's layout (a few layouts live at once: authority and candidates)."""
    key = _layout(doc)
    writer = _WRITERS.get(key)
    if writer is None:
        if len(_WRITERS) >= 4:
            _WRITERS.pop(next(iter(_WRITERS)))
        writer = _WRITERS[key] = AlphaPackWriter(doc)
    return writer
