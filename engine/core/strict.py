"""Strict inputs: one YAML reader for every user file, finite-number and uint64 checks, size limits.

``load_yaml`` refuses what the plain safe loader lets through: duplicate mapping keys (the last one
would silently win), keys that YAML 1.1 reads as booleans or null (``NO:``, Norway, is ``false``), alias
bombs (expansion is bounded before anything is built or formatted), documents nested deeper than :data:`MAX_DEPTH`, files larger than :data:`MAX_FILE_BYTES`, binary
and non-UTF-8 bytes. Every refusal is an :class:`EngineError` with the caller's code.
"""

from __future__ import annotations

import functools
import math
import pickle
import re
import sys
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from engine.core.errors import EngineError

UINT64_MAX = 2 ** 64 - 1
MAX_FILE_BYTES = 64 * 1024 * 1024     # a policy, study or alpha pack is a few hundred KiB
MAX_DEPTH = 64                        # nesting of a YAML document
MAX_NODES = 2_000_000                 # nodes after alias expansion (billion laughs stops here)
_BASE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_BASE):  # type: ignore[misc, valid-type]
    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    dup = key in seen
                except TypeError:
                    raise yaml.constructor.ConstructorError(None, None, "unhashable mapping key",
                                                            key_node.start_mark) from None
                if dup:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {str(key)[:80]!r}", key_node.start_mark)
                if key is None or isinstance(key, bool):   # YAML 1.1: NO (Norway), ON, Y, ~ are not text
                    raise yaml.constructor.ConstructorError(
                        None, None, f"mapping key {str(key_node.value)[:40]!r} reads as {key!r}, not text "
                                    f"(YAML 1.1); quote it", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: Node) -> int:
    """Nodes of the document with every alias expanded, and its depth; iterative, memoised, bounded."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        if id(node) in sizes and not done:
            continue
        if isinstance(node, ScalarNode):
            sizes[id(node)] = 1
            continue
        children = [c for pair in node.value for c in pair] if isinstance(node, MappingNode) else list(node.value)
        if not done:
            stack.append((node, depth, True))
            stack.extend((c, depth + 1, False) for c in children if id(c) not in sizes)
            continue
        total = 1 + sum(sizes.get(id(c), 1) for c in children)
        if total > MAX_NODES:
            raise ValueError(f"more than {MAX_NODES} nodes once aliases are expanded (alias bomb?)")
        sizes[id(node)] = total
    return sizes.get(id(root), 1)


def _check_depth(text: str) -> None:
    """Nesting depth from the event stream (iterative), before any node is composed: libyaml's
    composer recurses and would overflow the C stack on a 50,000-deep document."""
    scan = _BASE(text)
    depth = 0
    try:
        while scan.check_event():
            event = scan.get_event()
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
    finally:
        scan.dispose()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (" ".join(text.split()) if text else type(exc).__name__)[:200]


@functools.lru_cache(maxsize=32)
def _document(text: str) -> bytes:
    """The strict parse of ``text``, pickled: a pure function of the text, so a policy file read again (a promotion
    reads its folder several times, a certification once per seed's check) is parsed once per process and each
    caller gets its own copy (unpickling is about a hundredth of the parse). Refusals raise and are not kept."""
    loader = _StrictLoader(text)
    try:
        _check_depth(text)
        node = loader.get_single_node()
        if node is None:
            return pickle.dumps(None)
        _expanded_size(node)
        return pickle.dumps(loader.construct_document(node), protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        loader.dispose()


def parse_yaml(raw: bytes | str, source: str, code: str):
    """YAML text -> document, strictly (see the module docstring)."""
    if isinstance(raw, bytes):
        if len(raw) > MAX_FILE_BYTES:
            raise EngineError(code, f"{source}: file larger than {MAX_FILE_BYTES} bytes")
        if b"\x00" in raw:
            raise EngineError(code, f"{source}: binary file, not YAML text")
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise EngineError(code, f"{source}: not UTF-8 text") from None
    try:
        return pickle.loads(_document(raw))
    except yaml.YAMLError as exc:
        raise EngineError(code, f"{source}: malformed YAML ({_first_line(exc)})") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise EngineError(code, f"{source}: YAML refused ({_first_line(exc)})") from None


def read_bytes(path: str | Path, code: str, missing_code: str | None = None, limit: int = MAX_FILE_BYTES) -> bytes:
    """A regular file's bytes, size-checked before reading; a directory or unreadable path is coded."""
    path = Path(path)
    try:
        if not path.exists():
            raise EngineError(missing_code or code, f"{path}: file not found")
        if not path.is_file():
            raise EngineError(code, f"{path}: not a regular file")
        if path.stat().st_size > limit:
            raise EngineError(code, f"{path}: file larger than {limit} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise EngineError(code, f"{path}: unreadable ({exc.strerror or exc})") from None


def load_yaml(path: str | Path, code: str, missing_code: str | None = None):
    """Read and strictly parse one YAML file."""
    return parse_yaml(read_bytes(path, code, missing_code), str(path), code)


FLOAT_MAX = sys.float_info.max


def _too_large(value) -> bool:
    """An integer no float can hold (YAML reads ``999...9`` of 400 digits as an exact int, which every schema bound
    lets through and ``float()`` then cannot convert): as unusable as inf."""
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) > FLOAT_MAX


def non_finite_path(doc, where: str = "") -> str | None:
    """The path of the first NaN/inf number, or integer too large for a float, in a parsed document, or None. The
    walk builds no path strings (it runs on every candidate document); only a document that holds one is walked
    again with its paths, in the same order."""
    if _all_finite(doc):
        return None
    stack = [(doc, where)]
    while stack:
        value, at = stack.pop()
        if (isinstance(value, float) and not math.isfinite(value)) or _too_large(value):
            return at or "(top level)"
        if isinstance(value, dict):
            stack.extend((v, f"{at}.{k}" if at else str(k)) for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((v, f"{at}[{i}]") for i, v in enumerate(value))
    return None


def _all_finite(doc) -> bool:
    stack = [doc]
    isfinite = math.isfinite
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind is float:
            if not isfinite(value):
                return False
        elif kind is int:
            if value > FLOAT_MAX or value < -FLOAT_MAX:
                return False
        elif kind is dict:
            stack.extend(value.values())
        elif kind is list or kind is tuple:
            stack.extend(value)
        elif isinstance(value, float):      # a float subclass (numpy.float64)
            if not isfinite(value):
                return False
        elif _too_large(value):             # an int subclass
            return False
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
    return True


def require_finite(doc, source: str, code: str) -> None:
    at = non_finite_path(doc)
    if at is not None:
        raise EngineError(code, f"{source}: {at}: number is not finite (NaN, inf, or an integer too large for a float)")


_DECIMAL = re.compile(r"[+-]?[0-9]+")


def decimal_integer(text: str) -> int:
    """An integer written in ASCII decimal digits (an optional sign, blanks around it): what a command line's count or
    seed is. ``int()`` also reads ``1_0`` as 10 and other scripts' digits (Arabic-Indic, fullwidth), which a catalogue's
    merchant ids refuse; a ValueError names the text otherwise."""
    stripped = text.strip()
    if not _DECIMAL.fullmatch(stripped):
        raise ValueError(f"{text!r} is not an integer (decimal digits 0-9)")
    return int(stripped)


def check_uint64(value, what: str, code: str) -> int:
    """An integer in [0, 2**64 - 1] (seeds, ids); anything else is a coded refusal."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise EngineError(code, f"{what} must be an integer, got {str(value)[:40]!r}")
    if not 0 <= value <= UINT64_MAX:
        raise EngineError(code, f"{what} {value} outside [0, 2**64-1]")
    return value
