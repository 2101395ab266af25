"""``QtaskdistApp``'s configurable traitlets, derived from the settings model.

Every field of :class:`~qtaskdist_jupyter.core.options.Options` tagged ``traitlet`` becomes
a traitlet of the same name, type and help, set in Jupyter's config
(``c.QtaskdistApp.worker_stale_s = 3``) or on its command line
(``--QtaskdistApp.worker_stale_s=3``). Unset, it takes the field's environment variable,
else the field's default: the default is looked up when first read, so the environment
of the process that starts the server counts, not that of the import.
"""

from __future__ import annotations

from pathlib import Path
from types import NoneType, UnionType
from typing import Any, get_args

from traitlets import Bool, Float, HasTraits, Int, TraitType, Unicode, default

from qtaskdist_jupyter.core.config import load_options
from qtaskdist_jupyter.core.options import FIELDS, help_of, on

_TRAIT_OF: dict[Any, type[TraitType[Any, Any]]] = {
    int: Int,
    float: Float,
    bool: Bool,
    str: Unicode,
    Path: Unicode,
}


def trait_for(name: str) -> TraitType[Any, Any]:
    """The traitlet of field ``name``: its type, ``None`` allowed when the field's is, and
    the field's help with the variable that stands in when it is not configured."""
    info = FIELDS[name]
    annotation = info.annotation
    allow_none = isinstance(annotation, UnionType) and NoneType in get_args(annotation)
    if allow_none:
        annotation = next(a for a in get_args(annotation) if a is not NoneType)
    trait = _TRAIT_OF[annotation](allow_none=allow_none, help=help_of(name))
    return trait.tag(config=True)


def _from_environment(name: str) -> Any:
    def generate(self: HasTraits) -> Any:
        value = getattr(load_options(), name)
        return str(value) if isinstance(value, Path) else value

    generate.__name__ = f"_default_{name}"
    return default(name)(generate)


def option_traits() -> Any:
    """A mixin class holding the traitlets of the fields tagged ``traitlet``."""
    namespace: dict[str, object] = {"__doc__": __doc__}
    for name in on("traitlet"):
        namespace[name] = trait_for(name)
        namespace[f"_default_{name}"] = _from_environment(name)
    return type(HasTraits)("OptionTraits", (HasTraits,), namespace)


OptionTraits: Any = option_traits()
