"""deploy/kubernetes/: validated offline against Kubernetes' own schemas
(kubernetes-validate, strict: unknown fields are errors), and holding what
the README promises of it."""

import kubernetes_validate
import pytest
import yaml

from support.cluster import ROOT

pytestmark = pytest.mark.version_independent

MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
VERSIONS = ["1.29.0", "1.32.0"]


def documents():
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path, doc


def test_every_manifest_validates_against_the_kubernetes_schemas():
    assert MANIFESTS
    for path, doc in documents():
        for version in VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


def test_the_deployment_runs_two_probed_non_root_replicas_configured_from_a_secret():
    (deployment,) = [d for _, d in documents() if d["kind"] == "Deployment"]
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (c,) = pod["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    (url,) = [e for e in c["env"] if e["name"] == "DATABASE_URL"]
    assert url["valueFrom"]["secretKeyRef"]["key"] == "DATABASE_URL"
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
