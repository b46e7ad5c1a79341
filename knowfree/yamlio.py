"""YAML loading for every config and params file.

PyYAML follows YAML 1.1, where `5e-5` (no dot) is a *string*; learning rates are written that
way all the time, so this loader reads any decimal or scientific number as a float, as YAML 1.2
does.
"""
import re

import yaml


class _Loader(yaml.SafeLoader):
    pass


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
