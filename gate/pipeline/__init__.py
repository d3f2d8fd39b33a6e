"""The fail-closed release pipeline: contract -> smoke -> eval -> sign -> publish.

``run_release(request, on_event=...)`` stops at the first gate that does not
pass; nothing is signed unless every gate passed and nothing is published unless
it is signed. The verdict (``gate/verdict.json`` in the bundle) records which
gates ran, their results, tool versions and timestamps, and why it stopped.

Crash safety: the bundle is assembled in a staging directory beside ``out_dir``
and moved into place only once signed (or once a gate failed, unsigned, for
inspection); publishing moves the tag last (see :mod:`gate.oci`). Re-running the
same release is safe: a signed bundle already in ``out_dir`` for the same adapter
and contract, whose signature verifies with the signing key, is published
without running the gates again; otherwise everything runs from the start.

Every step emits an event dict (``{"event": "gate.start", "gate": "smoke", ...}``)
so a service can stream progress.

Where each step lives: ``_request`` (:class:`ReleaseRequest`, :class:`ReleaseResult`),
``_events`` (the event stream), ``_staging`` (the bundle directory: lock, staging,
resume), ``_gates`` (the gates into a verdict), ``_tools`` (the tool versions the
verdict records), ``_seal`` (seal, sign, publish) and ``_release``
(:func:`run_release`, which strings them together).

Example::

    result = run_release(ReleaseRequest(run_dir=Path("runs/r1"), contract_path=default_contract(),
                                        target="oci-layout://./registry:v1", out_dir=Path("bundle"),
                                        signing=SigningConfig(method="key", private_key=Path("k.pem"))))
    result.passed, result.published
"""

from __future__ import annotations

from gate.gates import GatesOutcome, run_gates
from gate.pipeline._release import run_release
from gate.pipeline._request import EventSink, ReleaseRequest, ReleaseResult

__all__ = ["EventSink", "GatesOutcome", "ReleaseRequest", "ReleaseResult", "run_gates", "run_release"]
