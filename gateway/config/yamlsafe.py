"""The one YAML reader of every file RoomWarden takes (configs, profiles, rule packs, drills, the
config inside a flashed envelope, the ingest's config): PyYAML's safe loader with bounds, so
that no input makes it use unbounded time, memory or stack.

Limits (`YamlLimits`; the defaults are documented in docs/limits.md):

- size: at most `max_bytes` of text (checked before parsing);
- nesting: at most `max_depth` levels of lists and mappings (a deeper document is refused at
  the first node past the limit, before Python's recursion limit could be reached);
- nodes: at most `max_nodes` scalars, lists and mappings *with aliases expanded* — an alias
  counts as the whole node it names, so a 400-byte "billion laughs" file is refused after a few
  hundred thousand counted nodes, long before anything expands it;
- aliases: at most `max_aliases`, and none that refers to a node containing itself;
- items: at most `max_items` entries in one list or mapping, and per top-level key a lower
  cap if the caller sets one (a profile's `points`).

Every limit is checked while the document is composed, node by node, so the work done before
a refusal is bounded by the limit, not by the file. The events come from libyaml's parser when
PyYAML has it (it also stops at 1,000 levels of flow nesting on its own; that is reported as
the depth limit), else from PyYAML's, whose scanner is stopped at the depth limit too. A
refusal is a `YamlLimitError`, a `yaml.MarkedYAMLError` carrying the line of the offending
node. Any other `yaml.MarkedYAMLError` (malformed text: a tab in the indentation …) leaves
`compose_limited` with a `yaml_path` attribute: the path of the node it was found in.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from gateway.config.yamllimits import (
    DEFAULT_LIMITS,
    MAX_ALIASES,
    MAX_BYTES,
    MAX_DEPTH,
    MAX_ITEMS,
    MAX_NODES,
    YamlLimits,
)

__all__ = ["DEFAULT_LIMITS", "HAVE_LIBYAML", "MAX_ALIASES", "MAX_BYTES", "MAX_DEPTH", "MAX_ITEMS",
           "MAX_NODES", "LimitedLoader", "PureLimitedLoader", "YamlLimitError", "YamlLimits",
           "compose_limited", "text_line", "walk_lines"]

HAVE_LIBYAML: bool = bool(getattr(yaml, "__with_libyaml__", False))


class YamlLimitError(yaml.MarkedYAMLError):
    """A document past one of the limits; `problem` says which, `problem_mark` where."""

    def __init__(self, reason: str, mark: Any) -> None:
        super().__init__(problem=reason, problem_mark=mark)
        self.reason = reason


class _LimitedComposer(Composer):
    """PyYAML's composer, enforcing `YamlLimits` node by node (see the module docstring). The
    events come from libyaml's parser (`LimitedLoader`) or PyYAML's own (`PureLimitedLoader`)."""

    limits: YamlLimits

    if TYPE_CHECKING:  # provided by the parser each loader is built on
        def check_event(self, *choices: Any) -> bool: ...
        def peek_event(self) -> Any: ...
        def dispose(self) -> None: ...

    def _start(self, text: str, limits: YamlLimits) -> None:
        self._text = text
        self.limits = limits
        self._open: list[tuple[int, str | None]] = []
        """Per node being composed, outermost first: its item cap and its top-level key."""
        self._nodes = 0
        self._aliases = 0
        self._sizes: dict[int, int] = {}
        """Expanded node count of every anchored node composed so far, by id."""
        self.error_path: list[str | int] = []
        """After a syntax error: the path of the node being composed when it was found."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        # A syntax error's path (`error_path`) is built as the error propagates out: a
        # mapping's value has its key node as `index`, a list's item its number. A value
        # whose first event could not be parsed is named by its key if the error is on the
        # key's line or the value starts on a later line (`rooms:⏎⇥- id: x`), not if the
        # key's line holds a value: `id: a⏎⇥site: b` is an error of the mapping (libyaml
        # reads the tab's line as more of the scalar `a`), not of `id`.
        try:
            self.check_event()
        except YamlLimitError:
            raise
        except yaml.MarkedYAMLError as exc:
            if isinstance(index, yaml.ScalarNode) and exc.problem_mark is not None and (
                    exc.problem_mark.line == index.start_mark.line
                    or not self._value_after(index)):
                self.error_path.insert(0, index.value)
            raise
        try:
            return self._compose_node(parent, index)
        except YamlLimitError:
            raise
        except yaml.MarkedYAMLError:
            if isinstance(index, yaml.ScalarNode):
                self.error_path.insert(0, index.value)
            elif isinstance(index, int) and not isinstance(index, bool):
                self.error_path.insert(0, index)
            raise

    def _compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if parent is not None:
            self._count_item(parent, index)
        limits = self.limits
        if self.check_event(yaml.AliasEvent):
            event = self._peek()
            target = self.anchors.get(event.anchor)
            if target is not None:  # an undefined alias is PyYAML's own error
                size = self._sizes.get(id(target))
                if size is None:
                    raise YamlLimitError(f"alias *{event.anchor} refers to a node that "
                                         "contains it (a recursive structure)", event.start_mark)
                self._aliases += 1
                if self._aliases > limits.max_aliases:
                    raise YamlLimitError(f"more than {limits.max_aliases} aliases",
                                         event.start_mark)
                self._add(size, event.start_mark)
            alias: yaml.Node = super().compose_node(parent, index)  # type: ignore[assignment]
            return alias
        event = self._peek()
        if len(self._open) >= limits.max_depth:
            raise YamlLimitError(f"nested deeper than {limits.max_depth} levels",
                                 event.start_mark)
        key = None
        if len(self._open) == 1 and isinstance(index, yaml.ScalarNode) \
                and index.value in limits.top_level_items:
            key = index.value
        cap = limits.top_level_items[key] if key is not None else limits.max_items
        self._open.append((cap, key))
        before = self._nodes
        try:
            node: yaml.Node = super().compose_node(parent, index)  # type: ignore[assignment]
        finally:
            self._open.pop()
        self._add(1, event.start_mark)
        if event.anchor is not None:
            self._sizes[id(node)] = self._nodes - before
        return node

    def compose_document(self) -> yaml.Node:
        node: yaml.Node = super().compose_document()  # type: ignore[assignment]
        self._sizes = {}
        return node

    def _value_after(self, key: yaml.Node) -> bool:
        """Whether something other than a comment follows `key:` on the key's line."""
        rest = text_line(self._text, key.end_mark.line)[key.end_mark.column:].lstrip()
        rest = rest.removeprefix(":").strip()
        return bool(rest) and not rest.startswith("#")

    def _peek(self) -> Any:
        """The next event (a NodeEvent wherever this is called: it has an anchor)."""
        return self.peek_event()

    def _count_item(self, parent: yaml.Node, index: Any) -> None:
        if isinstance(index, int):
            count = index + 1
        elif index is None and isinstance(parent, yaml.MappingNode):
            count = len(parent.value) + 1  # a new key
        else:
            return  # a mapping's value: counted with its key
        cap, key = self._open[-1]
        if count > cap:
            mark = self._peek().start_mark
            if key is not None:
                what = self.limits.top_level_what
                raise YamlLimitError(f"`{key}` has more than {cap} {what}; the limit is {cap}",
                                     mark)
            raise YamlLimitError(f"a list or mapping with more than {cap} entries", mark)

    def _add(self, count: int, mark: Any) -> None:
        self._nodes += count
        if self._nodes > self.limits.max_nodes:
            raise YamlLimitError(f"more than {self.limits.max_nodes} nodes (values, lists and "
                                 "mappings, aliases counted as what they repeat)", mark)


class PureLimitedLoader(_LimitedComposer, Reader, Scanner, Parser, SafeConstructor, Resolver):
    """The limits over PyYAML's pure-Python scanner and parser (where libyaml is missing)."""

    def __init__(self, stream: str, limits: YamlLimits = DEFAULT_LIMITS) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._start(stream, limits)

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        """The scanner's `[` / `{`: refused past the depth limit before it looks ahead (its
        look-ahead for a possible key costs the square of the open brackets)."""
        if self.flow_level >= self.limits.max_depth:
            raise YamlLimitError(f"nested deeper than {self.limits.max_depth} levels",
                                 self.get_mark())
        super().fetch_flow_collection_start(TokenClass)


LimitedLoader: Any = PureLimitedLoader
"""The loader `compose_limited` uses: libyaml's parser under the limits where PyYAML has it."""
if HAVE_LIBYAML:
    from yaml._yaml import CParser

    class _CLimitedLoader(_LimitedComposer, CParser, SafeConstructor, Resolver):
        """The limits over libyaml's parser (about ten times faster than PyYAML's)."""

        def __init__(self, stream: str, limits: YamlLimits = DEFAULT_LIMITS) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            self._start(stream, limits)

    LimitedLoader = _CLimitedLoader


def compose_limited(text: str, limits: YamlLimits = DEFAULT_LIMITS,
                    ) -> tuple[yaml.Node | None, Any]:
    """The document's root node (None for an empty document) and the loader that composed it
    (for `loader.construct_document(node)`). Raises YamlLimitError past a limit, any other
    yaml.YAMLError for malformed text."""
    if len(text) > limits.max_bytes:
        raise YamlLimitError(f"the text is {len(text)} characters; the limit is "
                             f"{limits.max_bytes}", None)
    loader = LimitedLoader(text, limits)
    try:
        return loader.get_single_node(), loader
    except YamlLimitError:
        raise
    except yaml.MarkedYAMLError as exc:
        if "maximum nesting depth" in str(exc.problem):  # libyaml's own limit (1,000 levels)
            raise YamlLimitError(f"nested deeper than {limits.max_depth} levels",
                                 exc.problem_mark) from None
        setattr(exc, "yaml_path", tuple(loader.error_path))  # noqa: B010 (read: yamlfile)
        raise
    finally:
        loader.dispose()


_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
"""What YAML counts as a line break (the line numbers of PyYAML's and libyaml's marks)."""


def text_line(text: str, line: int) -> str:
    """Line `line` (0-based, as a mark counts) of `text` without its line break ('' past the
    end): for the reason of a syntax error, read once."""
    lines = _LINE_BREAK.split(text)
    return lines[line] if 0 <= line < len(lines) else ""


def walk_lines(node: yaml.Node, path: tuple[str | int, ...],
               lines: dict[tuple[str | int, ...], int],
               problems: list[tuple[tuple[str | int, ...], str]], visited: set[int]) -> None:
    """Record the line (1-based) of every path of a composed document in `lines`, and each
    duplicate key in `problems`. A node an alias repeats is walked once (its repeats get the
    anchor's line), so the walk costs what the file holds (gateway.config.yamlfile)."""
    lines.setdefault(path, node.start_mark.line + 1)
    if id(node) in visited:
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[object] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            same = _as_read(key_node, key)
            if same in seen:
                lines.setdefault(path + (key,), key_node.start_mark.line + 1)
                problems.append((path + (key,), f"key {key!r} appears twice in this mapping"
                                 + ("" if same == key else f" (as {same!r})")))
            seen.add(same)
            walk_lines(value_node, path + (key,), lines, problems, visited)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            walk_lines(item, path + (index,), lines, problems, visited)


_SCALARS = yaml.constructor.SafeConstructor()
_READ_AS: dict[str, Any] = {"tag:yaml.org,2002:int": _SCALARS.construct_yaml_int,
                            "tag:yaml.org,2002:float": _SCALARS.construct_yaml_float,
                            "tag:yaml.org,2002:bool": _SCALARS.construct_yaml_bool,
                            "tag:yaml.org,2002:null": _SCALARS.construct_yaml_null}
"""The loader's own readings of a plain scalar (these keep nothing in the constructor)."""


def _as_read(node: yaml.Node, text: str) -> object:
    """A mapping key as the loader will read it: `1`, `0x1` and `01` are one int key (the
    last silently won: an enum `{1: normal, 0x1: FIRE}` read 1 as FIRE — the config audit),
    `yes` and `true` one bool; any other key (a string) as written."""
    read = _READ_AS.get(node.tag) if isinstance(node, yaml.ScalarNode) else None
    if read is None:
        return text
    try:
        value: object = read(node)
    except (ValueError, OverflowError, yaml.YAMLError):
        return text
    return value

