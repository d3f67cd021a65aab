"""Reading YAML defensively: the safe loader, plus three refusals made on the node graph before
any Python object is built, so a hostile file is refused in linear time.

- Aliases that expand too far ("billion laughs"): counting every use of an alias as a full copy of
  what it refers to, the aliases may add at most `MAX_ALIAS_NODES` nodes. The count is memoised per
  node, so even 10^9 expanded nodes are counted in a few microseconds.
- A recursive alias (an anchor used inside its own node), and nesting deeper than `MAX_DEPTH`.
- A key given twice in one mapping: refused with both lines (YAML's last-one-wins is silent).
"""

from __future__ import annotations

from typing import Any

import yaml

from harness.config.errors import ConfigError

MAX_ALIAS_NODES = 10_000  # nodes that alias uses may add to a document (each use counted in full)
MAX_DEPTH = 200           # nesting of mappings and sequences


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for kv in node.value for n in kv]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _expanded_size(root: yaml.Node, what: str) -> tuple[int, int]:
    """(nodes with every alias expanded, distinct nodes), without expanding anything. Iterative
    post-order walk with a memo; a node met again while it is still open is a recursive alias."""
    size: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        key = id(node)
        if key in size:
            continue
        if depth > MAX_DEPTH:
            raise ConfigError(f"{what}: nested deeper than {MAX_DEPTH} levels{_at(node)}")
        kids = _children(node)
        if key not in open_:
            open_.add(key)
            stack.append((node, depth))
            for kid in kids:
                if id(kid) in open_ and id(kid) not in size:
                    raise ConfigError(f"{what}: a recursive alias (an anchor used inside itself){_at(kid)}")
                stack.append((kid, depth + 1))
            continue
        size[key] = 1 + sum(size[id(k)] for k in kids)
        open_.discard(key)
    return size[id(root)], len(size)


def _at(node: yaml.Node) -> str:
    return f", line {node.start_mark.line + 1}"


def _check_keys(node: yaml.MappingNode, prefix: str, what: str, lines: dict[str, int]) -> None:
    """Refuse a key written twice in one mapping; record each key's line under its dotted name."""
    seen: dict[str, int] = {}
    for k, _ in node.value:
        if not isinstance(k, yaml.ScalarNode) or k.tag == "tag:yaml.org,2002:merge":
            continue
        line = k.start_mark.line + 1
        if k.value in seen:
            raise ConfigError(f"{what}: key '{prefix}{k.value}' is given twice (lines {seen[k.value]} and "
                              f"{line}); keep one")
        seen[k.value] = line
        lines.setdefault(f"{prefix}{k.value}", line)


def _walk_keys(root: yaml.Node, what: str) -> dict[str, int]:
    """Dotted key -> line for every mapping key (first occurrence); duplicate keys refused."""
    lines: dict[str, int] = {}
    done: set[tuple[int, str]] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, prefix = stack.pop()
        if (id(node), prefix) in done:
            continue
        done.add((id(node), prefix))
        if isinstance(node, yaml.MappingNode):
            _check_keys(node, prefix, what, lines)
            stack.extend((v, f"{prefix}{k.value}." if isinstance(k, yaml.ScalarNode) else prefix)
                         for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((v, prefix) for v in node.value)
    return lines


def _yaml_error(what: str, e: yaml.YAMLError) -> ConfigError:
    if isinstance(e, yaml.reader.ReaderError):
        return ConfigError(f"{what}: not valid YAML: character #x{e.character:04x} at position {e.position} "
                           f"({e.reason})")
    mark = getattr(e, "problem_mark", None)
    problem = " ".join((getattr(e, "problem", None) or str(e)).split())
    where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return ConfigError(f"{what}{where}: not valid YAML: {problem}")


def load_yaml(text: str, what: str) -> tuple[Any, dict[str, int]]:
    """(the document as plain data, dotted key -> line). `what` names the source in messages
    ("config file configs/x.yaml", "--set 'k=v'"). Raises ConfigError for invalid or hostile YAML."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as e:
        raise _yaml_error(what, e) from None
    try:
        root = loader.get_single_node()
        if root is None:
            return None, {}
        total, distinct = _expanded_size(root, what)
        if total - distinct > MAX_ALIAS_NODES:
            raise ConfigError(f"{what}: YAML aliases expand to {total} nodes, more than {MAX_ALIAS_NODES} "
                              f"beyond the {distinct} written; write the values out instead")
        lines = _walk_keys(root, what)
        return loader.construct_document(root), lines
    except yaml.YAMLError as e:
        raise _yaml_error(what, e) from None
    except RecursionError:
        raise ConfigError(f"{what}: nested too deeply to read") from None
    finally:
        loader.dispose()
