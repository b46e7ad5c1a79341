"""YAML loading for every config and params file.

PyYAML follows YAML 1.1, where `5e-5` (no dot) is a *string*; learning rates are written that
way all the time, so this loader reads any decimal or scientific number as a float, as YAML 1.2
does.
"""
import re

import yaml


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        # PyYAML keeps the last of two equal keys and drops the first without a word: a second
        # `train:` block would silently replace the first
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, (str, int, float, bool)):
                    continue  # an unhashable key is PyYAML's own error to report
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}",
                                                            key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+][0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def load(text):
    """Parse YAML text (str or stream) with YAML 1.2 number rules."""
    return yaml.load(text, Loader=_Loader)


def load_file(path, what: str = "config") -> dict:
    """A YAML mapping from ``path``; unreadable files and bad YAML become ConfigError."""
    from pathlib import Path

    from knowfree.errors import ConfigError
    from knowfree.provenance import decode_utf8
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}") from None
    try:
        data = load(decode_utf8(raw, str(path)))
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {path} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must be a YAML mapping (key: value lines), "
                          f"got {type(data).__name__}")
    return data


def apply_overrides(config: dict, overrides) -> dict:
    """`--set train.epochs=3`: dotted key, YAML-parsed value, on a deep copy of ``config``.
    Unknown keys are left for the caller's validation to report."""
    import copy

    from knowfree.errors import ConfigError
    config = copy.deepcopy(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key.sub=value, got {item!r}")
        try:
            value = load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML: {e}") from None
        parts = key.strip().split(".")
        node = config
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {key}: {p!r} is not a section")
            node = nxt
        node[parts[-1]] = value
    return config
