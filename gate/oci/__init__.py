"""Publish and pull bundles as CNCF ModelPack OCI artifacts, with the signature as a referrer.

Two stores with the same semantics: a registry (``oci://HOST[:PORT]/REPO:TAG``,
spoken to through oras-py's HTTP transport and auth backends) and an on-disk
OCI image layout (``oci-layout://PATH:TAG``, no server needed).

Publishing is ordered so that a crash or kill at any point leaves no tag naming
an unsigned or partial artifact:

1. every blob (config, one raw layer per file) is uploaded, skipping those the
   store already has (HEAD first);
2. the manifest is put by digest (no tag);
3. the signature is put as a referrer manifest whose ``subject`` is the bundle
   manifest (OCI referrers API, or the ``sha256-<hex>`` referrers tag schema where
   the registry lacks the API);
4. only then is the tag moved to the manifest digest.

Re-running is safe: blobs and manifests are content-addressed, and the manifest
bytes are deterministic for a given bundle.

Example::

    result = publish(Path("bundle"), parse_ref("oci-layout://./registry:v1"))
    pulled = pull(parse_ref("oci-layout://./registry:v1"), Path("staging"))
"""

from gate.oci._common import ARTIFACT_TYPE, FILEPATH_ANNOTATION, MEDIA_TYPES
from gate.oci.layout import LayoutStore, open_store
from gate.oci.modelpack import build_manifest
from gate.oci.publish import PublishResult, publish
from gate.oci.pull import PulledBundle, pull
from gate.oci.refs import OciRef, is_oci_ref, parse_ref
from gate.oci.registry import RegistryStore
from gate.oci.store import Store

__all__ = [
    "ARTIFACT_TYPE",
    "FILEPATH_ANNOTATION",
    "MEDIA_TYPES",
    "LayoutStore",
    "OciRef",
    "PublishResult",
    "PulledBundle",
    "RegistryStore",
    "Store",
    "build_manifest",
    "is_oci_ref",
    "open_store",
    "parse_ref",
    "publish",
    "pull",
]
