"""OCI references: ``oci://HOST[:PORT]/REPO[:TAG][@DIGEST]`` and ``oci-layout://PATH[:TAG][@DIGEST]``."""

from __future__ import annotations

from dataclasses import dataclass

from gate.errors import InputError
from gate.oci._common import _DIGEST_RE, _REPO_RE, _TAG_RE


@dataclass(frozen=True)
class OciRef:
    """A parsed reference: ``oci://HOST/REPO[:TAG][@DIGEST]`` or ``oci-layout://PATH[:TAG][@DIGEST]``."""

    kind: str  # "registry" or "layout"
    location: str  # HOST[:PORT] or the layout directory
    repository: str  # empty for a layout
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        base = (
            f"oci://{self.location}/{self.repository}"
            if self.kind == "registry"
            else f"oci-layout://{self.location}"
        )
        return base + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def with_digest(self, digest: str) -> OciRef:
        """The same repository, pinned to ``digest`` (no tag)."""
        return OciRef(self.kind, self.location, self.repository, None, digest)


def is_oci_ref(text: str) -> bool:
    """Whether ``text`` is an ``oci://`` or ``oci-layout://`` reference (not a local directory)."""
    return text.startswith(("oci://", "oci-layout://"))


def _split_tag_digest(rest: str) -> tuple[str, str | None, str | None]:
    digest = None
    if "@" in rest:
        rest, digest = rest.rsplit("@", 1)
        if not _DIGEST_RE.match(digest):
            raise InputError(f"bad digest {digest!r}", hint="expected sha256:<64 hex digits>")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise InputError(f"bad tag {tag!r}", hint="letters, digits, '_', '.', '-' (at most 128)")
    return rest, tag, digest


def parse_ref(text: str) -> OciRef:
    """Parse an OCI reference; InputError names what is wrong."""
    if text.startswith("oci-layout://"):
        path, tag, digest = _split_tag_digest(text[len("oci-layout://") :])
        if not path:
            raise InputError(f"reference {text!r} names no directory")
        return OciRef("layout", path, "", tag, digest)
    if text.startswith("oci://"):
        rest = text[len("oci://") :]
        if "/" not in rest:
            raise InputError(f"reference {text!r} names no repository", hint="oci://HOST[:PORT]/REPO:TAG")
        host, rest = rest.split("/", 1)
        repo, tag, digest = _split_tag_digest(rest)
        if not _REPO_RE.match(repo):
            raise InputError(f"bad repository name {repo!r} in {text!r}", hint="lowercase path components")
        if not host:
            raise InputError(f"reference {text!r} names no registry host")
        return OciRef("registry", host, repo, tag, digest)
    raise InputError(
        f"not an OCI reference: {text!r}", hint="oci://HOST[:PORT]/REPO:TAG or oci-layout://PATH:TAG"
    )
