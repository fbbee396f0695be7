"""Find modality plugins by entry point, load them lazily, and keep one broken plugin from breaking the rest.

A plugin distribution declares, in its ``pyproject.toml``::

    [project.entry-points."polydiff.modalities"]
    images = "polydiff_images:modality"

The registry reads these declarations from installed metadata only (no plugin code runs) until a
modality is actually needed. The guarantees of DESIGN.md §3 follow from that:

* listing names (:meth:`Registry.names`, :meth:`Registry.infos` with ``check=False``) imports no plugin;
* :meth:`Registry.load` imports only the plugin asked for, once, and caches the result;
* every import is isolated: whatever a plugin raises while being imported, instantiated or checked
  (``SystemExit`` included) is caught and turned into a *broken* status whose one-line reason names
  the exception, so ``--help``, the listing and the other modalities keep working;
* two distributions declaring one name is reported as a *conflict* naming both, never resolved by
  whichever happens to come first on ``sys.path``.

The target of an entry point may be an instance (the usual case) or a class; a class is instantiated
with no arguments, so a plugin can point at its :class:`~polydiff.protocol.Modality` subclass
directly without a module-level instance.

This module imports neither torch nor any plugin: the CLI imports it to build ``--help``.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from polydiff.protocol import deprecations, missing_members, signature_problems, version_problem

__all__ = [
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "BrokenPlugin",
    "PluginConflict",
    "PluginInfo",
    "Registry",
    "RegistryError",
    "UnknownModality",
    "get_registry",
    "reset_registry",
]

ENTRY_POINT_GROUP = "polydiff.modalities"
#: set to "1", "true" or "yes" to ignore installed plugins (tests, or escaping a bad install)
DISABLE_ENV = "POLYDIFF_DISABLE_PLUGIN_AUTOLOAD"

_TRUTHY = {"1", "true", "yes"}
#: the distribution name given to modalities registered in memory
MEMORY_DISTRIBUTION = "<memory>"
_UNKNOWN_DISTRIBUTION = "<unknown distribution>"


# ----------------------------------------------------------------------------------------- errors


class RegistryError(Exception):
    """Base of the registry's errors; ``str(e)`` is one line saying what is wrong and what is available.

    One line because the CLI prints it as is, in colour and without a traceback.
    """


class UnknownModality(RegistryError):
    """No plugin declares the requested name.

    Attributes: ``name`` (what was asked for) and ``available`` (names that are not known to be
    broken or in conflict; plugins not imported yet count as available, since checking them would
    import every plugin just to phrase an error).
    """

    def __init__(self, name: str, available: Iterable[str], hint: str = "") -> None:
        self.name = name
        self.available = sorted(available)
        if self.available:
            listing = "available: " + ", ".join(self.available)
        else:
            listing = f"no modality is available (no installed package declares entry points in group {ENTRY_POINT_GROUP!r}; install one, e.g. polydiff-images)"
        super().__init__(f"unknown modality {name!r}; {listing}{hint}")


class BrokenPlugin(RegistryError):
    """The plugin exists but cannot be used: its import failed, or the object breaks the contract.

    Attributes: ``name``, ``distribution``, ``version``, ``reason`` (one line). When raised by
    :meth:`Registry.load` after a failed import, ``__cause__`` holds the original exception so a
    ``--verbose`` mode can show its traceback.
    """

    def __init__(self, name: str, distribution: str, version: str, reason: str) -> None:
        self.name = name
        self.distribution = distribution
        self.version = version
        self.reason = reason
        super().__init__(
            f"modality {name!r} from distribution {_dist_label(distribution, version)} is broken: {reason}"
        )


class PluginConflict(RegistryError):
    """Several distributions declare the same modality name; the user has to uninstall one.

    Attributes: ``name`` and ``claimants``, a list of ``(distribution, version, target)`` sorted by
    distribution.
    """

    def __init__(self, name: str, claimants: Iterable[tuple[str, str, str]]) -> None:
        self.name = name
        self.claimants = sorted(claimants)
        who = " and ".join(f"{_dist_label(d, v)} ({t})" for d, v, t in self.claimants)
        super().__init__(
            f"modality {name!r} is claimed by {len(self.claimants)} distributions: {who}; uninstall all but one of them"
        )


# ------------------------------------------------------------------------------------------ infos


@dataclass
class PluginInfo:
    """What the listing shows about one claim on a modality name.

    ``status`` is ``"ok"``, ``"broken"`` (``reason`` says why), ``"conflict"`` (``reason`` names the
    other claimants; a conflicting name yields one info per distribution) or ``"unchecked"`` (known
    from metadata only, never imported). ``target`` is the entry-point value, e.g.
    ``"polydiff_images:modality"``; for in-memory registrations it is ``"module:QualifiedClass"``.
    """

    name: str
    distribution: str
    version: str
    target: str
    status: str
    reason: str | None = None
    #: one line when the plugin loads but needs attention (newer contract minor, contract-1 names)
    warning: str | None = None


@dataclass
class _Claim:
    """One (distribution, name) declaration and, once checked, its outcome (cached)."""

    name: str
    distribution: str
    version: str
    target: str
    entry_point: importlib.metadata.EntryPoint | None = None
    obj: Any = None
    status: str = "unchecked"
    reason: str | None = None
    error: BaseException | None = None
    warning: str | None = None

    def info(self) -> PluginInfo:
        return PluginInfo(
            self.name, self.distribution, self.version, self.target, self.status, self.reason,
            self.warning,
        )


# --------------------------------------------------------------------------------------- registry


class Registry:
    """Modalities known to this process: those declared by installed distributions plus in-memory ones.

    ``autoload`` decides whether installed entry points are scanned; ``None`` means "yes unless the
    environment variable :data:`DISABLE_ENV` is ``1``/``true``/``yes``" (read once, here), so a test
    suite or a user with a bad plugin installed can opt out without code changes. An explicit
    ``True``/``False`` overrides the environment. The scan itself is deferred to the first query, so
    building a registry costs nothing.
    """

    def __init__(self, autoload: bool | None = None) -> None:
        if autoload is None:
            autoload = os.environ.get(DISABLE_ENV, "").strip().lower() not in _TRUTHY
        self.autoload: bool = autoload
        #: one line per distribution whose metadata could not be read during discovery
        self.discovery_errors: list[str] = []
        self._claims: dict[str, list[_Claim]] = {}
        self._discovered = not autoload
        # re-entrant: a plugin's import may itself ask the registry for another modality
        self._lock = threading.RLock()

    # ---------------------------------------------------------------------------- public API

    def register(
        self, modality: Any, *, distribution: str = MEMORY_DISTRIBUTION, version: str = ""
    ) -> None:
        """Add a modality object (or a class, instantiated with no arguments) without an entry point.

        Meant for tests and embedding. The object is checked like a plugin and, since the caller holds
        it, a bad one raises :class:`BrokenPlugin` at once instead of being recorded as broken.
        Registering a name again from the same distribution replaces the earlier object; from a
        different distribution (or one installed under that name) it makes the name a conflict.
        """
        cls = modality if isinstance(modality, type) else type(modality)
        target = f"{cls.__module__}:{cls.__qualname__}"
        try:
            label = getattr(modality, "name", None)
        except Exception:
            label = None
        label = label if isinstance(label, str) and label else f"<{cls.__qualname__}>"
        try:
            obj = modality() if isinstance(modality, type) else modality
        except (Exception, SystemExit) as exc:
            raise BrokenPlugin(label, distribution, version, _describe(exc)) from exc
        problem = _problem(obj, None)
        if problem is not None:
            raise BrokenPlugin(label, distribution, version, problem)
        claim = _Claim(obj.name, distribution, version, target, obj=obj, status="ok")
        claim.warning = _warning(obj, label, distribution, version)
        with self._lock:
            self._add(claim, replace=True)

    def infos(self, check: bool = True) -> list[PluginInfo]:
        """Every claim, sorted by name (then distribution). Never raises for a plugin's sake.

        ``check=True`` imports each non-conflicting plugin (isolated, cached) to fill ``status``;
        ``check=False`` reads metadata only: plugins not loaded yet report ``"unchecked"``, those
        already loaded report what was found.
        """
        with self._lock:
            self._ensure_discovered()
            out: list[PluginInfo] = []
            for name in sorted(self._claims):
                claims = self._claims[name]
                if len(claims) > 1:
                    out.extend(self._conflict_infos(claims))
                    continue
                if check:
                    self._check(claims[0])
                out.append(claims[0].info())
            return out

    def names(self) -> list[str]:
        """Sorted names of all declared or registered modalities, whatever their status; imports none."""
        with self._lock:
            self._ensure_discovered()
            return sorted(self._claims)

    def load(self, name: str) -> Any:
        """The modality object for ``name``, importing only its plugin, once.

        Raises :class:`UnknownModality` (nobody declares it), :class:`PluginConflict` (several
        distributions do) or :class:`BrokenPlugin` (import failed or contract broken; the failure is
        cached, so the plugin is not re-imported on every call).
        """
        with self._lock:
            self._ensure_discovered()
            claims = self._claims.get(name)
            if not claims:
                hint = (
                    ""
                    if self.autoload
                    else f" (installed plugins are ignored: autoload is off, see {DISABLE_ENV})"
                )
                raise UnknownModality(name, self._available(), hint)
            if len(claims) > 1:
                raise PluginConflict(name, [(c.distribution, c.version, c.target) for c in claims])
            claim = claims[0]
            self._check(claim)
            if claim.status != "ok":
                raise BrokenPlugin(
                    name, claim.distribution, claim.version, claim.reason or "unknown reason"
                ) from claim.error
            return claim.obj

    # ------------------------------------------------------------------------------- helpers

    def _available(self) -> list[str]:
        """Names that may load: one claimant, not known broken (no import happens here)."""
        return [n for n, cs in self._claims.items() if len(cs) == 1 and cs[0].status != "broken"]

    def _add(self, claim: _Claim, *, replace: bool) -> None:
        """Record a claim; one claim per (normalised distribution, name), since the same
        distribution can be seen twice (e.g. an editable install plus a copy on ``sys.path``)."""
        key = _normalize(claim.distribution)
        claims = self._claims.setdefault(claim.name, [])
        for i, other in enumerate(claims):
            if _normalize(other.distribution) == key:
                if replace:
                    claims[i] = claim
                return
        claims.append(claim)

    def _ensure_discovered(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        for ep in self._entry_points():
            dist, version = _dist_of(ep)
            self._add(_Claim(ep.name, dist, version, ep.value, entry_point=ep), replace=False)

    def _entry_points(self) -> list[importlib.metadata.EntryPoint]:
        """Entry points of our group, surviving a distribution with unreadable metadata.

        ``importlib.metadata.entry_points`` parses every installed distribution and fails as a whole
        on one malformed ``entry_points.txt``; then we go distribution by distribution and note the
        ones we had to skip in :attr:`discovery_errors`.
        """
        try:
            return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
        except Exception:
            pass
        found: list[importlib.metadata.EntryPoint] = []
        for dist in importlib.metadata.distributions():
            try:
                found.extend(ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP)
            except Exception as exc:
                name, version = _dist_name_version(dist)
                self.discovery_errors.append(f"{_dist_label(name, version)}: {_describe(exc)}")
        return found

    def _check(self, claim: _Claim) -> None:
        """Import, instantiate and validate a claim once; record the outcome, never raise."""
        if claim.status != "unchecked" or claim.entry_point is None:
            return
        try:
            obj = claim.entry_point.load()
            if isinstance(obj, type):
                obj = obj()
        except (Exception, SystemExit) as exc:
            claim.status, claim.reason, claim.error = "broken", _describe(exc), exc
            return
        problem = _problem(obj, claim.name)
        if problem is None:
            claim.status, claim.obj = "ok", obj
            claim.warning = _warning(obj, claim.name, claim.distribution, claim.version)
        else:
            claim.status, claim.reason = "broken", problem

    @staticmethod
    def _conflict_infos(claims: list[_Claim]) -> list[PluginInfo]:
        out = []
        for claim in sorted(claims, key=lambda c: _normalize(c.distribution)):
            others = ", ".join(
                _dist_label(o.distribution, o.version) for o in claims if o is not claim
            )
            info = claim.info()
            info.status, info.reason = "conflict", f"name also claimed by {others}"
            out.append(info)
        return out


# -------------------------------------------------------------------------------- default instance

_default: Registry | None = None
_default_lock = threading.Lock()


def get_registry() -> Registry:
    """The process-wide registry the CLI uses, created on first call (so importing stays free)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Registry()
        return _default


def reset_registry() -> None:
    """Forget the process-wide registry; the next :func:`get_registry` rescans (for tests that
    install throw-away distributions or change :data:`DISABLE_ENV`)."""
    global _default
    with _default_lock:
        _default = None


# ----------------------------------------------------------------------------------- small helpers


def _problem(obj: Any, expected_name: str | None) -> str | None:
    """Why ``obj`` cannot serve as the modality ``expected_name``, in one line, or ``None``.

    ``expected_name=None`` (in-memory registration) skips the entry-point name comparison.
    Checks, in order: required members, the contract version, the name, and every implemented
    member's signature against its declaration (the first mismatch is named).

    Looking at members runs plugin code too (properties, ``__getattr__``), hence the guard.
    """
    try:
        missing = missing_members(obj)
        if missing:
            return "missing required members: " + ", ".join(missing)
        problem, _ = version_problem(obj.protocol_version)
        if problem is not None:
            return problem
        if not isinstance(obj.name, str):
            return f"name must be a string, not {type(obj.name).__name__}"
        if expected_name is not None and obj.name != expected_name:
            return f"object is named {obj.name!r} but its entry point is named {expected_name!r}"
        mismatches = signature_problems(obj)
        if mismatches:
            more = f" (and {len(mismatches) - 1} more)" if len(mismatches) > 1 else ""
            return f"member signature: {mismatches[0]}{more}"
    except (Exception, SystemExit) as exc:
        return f"checking its members raised {_describe(exc)}"
    return None


def _warning(obj: Any, name: str, distribution: str, version: str) -> str | None:
    """The load-time warning of a usable plugin (also issued through :mod:`warnings`), or None."""
    try:
        notes = [w for w in (version_problem(obj.protocol_version)[1],) if w]
        notes += deprecations(obj)
    except Exception:
        return None
    if not notes:
        return None
    text = "; ".join(notes)
    category = DeprecationWarning if not notes[0].startswith("written for") else UserWarning
    warnings.warn(
        f"modality {name!r} from {_dist_label(distribution, version)}: {text}", category, stacklevel=3
    )
    return text


def _describe(exc: BaseException) -> str:
    """``"ExceptionType: message"`` on one line (multi-line messages are joined)."""
    message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _normalize(distribution: str) -> str:
    """PEP 503 name normalisation, so ``Foo_Bar`` and ``foo-bar`` count as one distribution."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _dist_label(distribution: str, version: str) -> str:
    return f"{distribution} {version}" if version else distribution


def _dist_name_version(dist: importlib.metadata.Distribution) -> tuple[str, str]:
    try:
        name = dist.metadata["Name"] or _UNKNOWN_DISTRIBUTION
    except Exception:
        name = _UNKNOWN_DISTRIBUTION
    try:
        version = dist.version or ""
    except Exception:
        version = ""
    return str(name), str(version)


def _dist_of(ep: importlib.metadata.EntryPoint) -> tuple[str, str]:
    """(distribution name, version) owning ``ep``; the dist can be missing for hand-made entry points."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return _UNKNOWN_DISTRIBUTION, ""
    return _dist_name_version(dist)
