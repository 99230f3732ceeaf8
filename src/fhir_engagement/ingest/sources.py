"""Which source a record belongs to, and the keys that keep sources apart (rules.md s.7).

Each provider numbers its own resources: ``Patient/1`` at trust A and ``Patient/1`` at trust B are
two children, so every resource key carries its source as a suffix: ``Patient/1@trust-a``. One
namespace is written without a suffix, the *home* one: the records of the FHIR server the adapter
writes back to (their ids are literal references there) and, with no server, the records nothing
names a source for, so that a single-source replay keeps the keys and output ids it always had.

A record's source is, first to last: the base of its Bundle entry's absolute ``fullUrl`` (it says
whose ids these are), the source configured for its file or folder (``sources[].folders``, else
``--source``), its ``meta.source``; for HL7 v2, MSH-3/MSH-4 through ``sources[].facilities``. A
server, ``meta.source`` or facility that no source lists is a source of its own, named by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath

from fhir_engagement.config import Settings, SourceConfig
from fhir_engagement.model import HOME

__all__ = ["Sources", "base_and_path"]


def base_and_path(url: str) -> tuple[str, str] | None:
    """An absolute ``https://x/fhir/Patient/1/_history/2`` -> (``https://x/fhir``, ``Patient/1``).

    None for anything that is not an absolute http(s) URL naming ``Type/id``.
    """
    if not url.startswith(("http://", "https://")):
        return None
    parts = url.split("?", 1)[0].rstrip("/").split("/")
    if "_history" in parts[3:]:
        parts = parts[: len(parts) - parts[::-1].index("_history") - 1]
    if len(parts) < 5 or not parts[-2][:1].isupper():  # scheme, '', host, Type, id at least
        return None
    return "/".join(parts[:-2]), "/".join(parts[-2:])


def _norm(url: str) -> str:
    return url.split("#", 1)[0].rstrip("/").lower()


@dataclass(frozen=True)
class Sources:
    """The configured sources, looked up by server, file, facility and name."""

    configs: tuple[SourceConfig, ...] = ()
    default: str = ""  # --source: the source of input nothing else names
    home_server: str | None = None  # the FHIR server written back to
    _by_server: Mapping[str, SourceConfig] = field(default_factory=dict, repr=False)
    _by_facility: Mapping[str, SourceConfig] = field(default_factory=dict, repr=False)
    _by_name: Mapping[str, SourceConfig] = field(default_factory=dict, repr=False)
    _folders: dict[str, str | None] = field(default_factory=dict, repr=False, compare=False)
    # config(HOME)'s answer (a scan of every source), asked 4 times a resource read; not an
    # __init__ field, so a dataclasses.replace() with another home server starts afresh
    _configs: dict[str, SourceConfig | None] = field(default_factory=dict, init=False,
                                                     repr=False, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Sources:
        configs = settings.sources
        return cls(
            configs, settings.source, settings.fhir_base,
            {_norm(s): c for c in configs for s in c.servers},
            {f.upper(): c for c in configs for f in c.facilities},
            {c.name: c for c in configs},
        )

    def _namespace(self, config: SourceConfig) -> str:
        home = self.home_server is not None and _norm(self.home_server) in map(_norm, config.servers)
        return HOME if home else config.name

    def for_server(self, base: str) -> str:
        """The namespace of a FHIR server's ids (a fullUrl base, meta.source, the subscribed one)."""
        if self.home_server is not None and _norm(base) == _norm(self.home_server):
            return HOME
        config = self._by_server.get(_norm(base))
        return self._namespace(config) if config else base.split("#", 1)[0].rstrip("/")

    def for_file(self, path: str) -> str | None:
        """The source configured for a file by its folders, else ``--source``; None: neither.

        Asked once per document: the answer is kept per folder (a path parse per NDJSON line
        cost 4% of a replay)."""
        folder = path.rsplit("/", 1)[0] if "/" in path else ""
        if folder not in self._folders:
            self._folders[folder] = self._for_folder(path)
        return self._folders[folder]

    def _for_folder(self, path: str) -> str | None:
        parents = PurePath(path).parent.parts
        for config in self.configs:
            for folder in config.folders:
                want = PurePath(folder).parts
                if want and tuple(parents[-len(want):]) == want:
                    return self._namespace(config)
        return self.for_name(self.default) if self.default else None

    def for_name(self, name: str) -> str:
        config = self._by_name.get(name)
        return self._namespace(config) if config else name

    def for_facility(self, application: str, facility: str) -> str:
        """An HL7 v2 sender's namespace: ``APP^FAC`` or ``FAC`` as configured, else ``--source``,
        else home (v2 keys and local ids already carry the facility and assigning authority)."""
        config = (self._by_facility.get(f"{application}^{facility}".upper())
                  or self._by_facility.get(facility.upper()))
        if config is not None:
            return self._namespace(config)
        return self.for_name(self.default) if self.default else HOME

    def config(self, namespace: str) -> SourceConfig | None:
        """The configured source of a namespace (home too, where a source lists the server)."""
        if namespace != HOME:
            return self._by_name.get(namespace)
        if HOME not in self._configs:
            self._configs[HOME] = next(
                (c for c in self.configs if self._namespace(c) == HOME), None)
        return self._configs[HOME]

    def ods(self, namespace: str) -> str | None:
        config = self.config(namespace)
        return config.ods if config else None
