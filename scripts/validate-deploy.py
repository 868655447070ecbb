#!/usr/bin/env python3
"""Validate what `sealpipe deploy` prints, offline (issue 22).

    sealpipe deploy kubernetes ... | scripts/validate-deploy.py kubernetes
    sealpipe deploy batch ...      | scripts/validate-deploy.py register-job-definition
    sealpipe deploy batch --submit-job ... | scripts/validate-deploy.py submit-job

kubernetes: the object against the Kubernetes API's OpenAPI schemas that the
`kubernetes-validate` package ships, strict (an unknown field is an error),
for each of --kubernetes-version (comma-separated; default 1.33, where
backoffLimitPerIndex and podFailurePolicy are GA). register-job-definition / submit-job: the input
against botocore's own AWS Batch service model (the shapes of
RegisterJobDefinition / SubmitJob) with botocore's ParamValidator: unknown
fields, missing required ones and wrong types are errors.

Prints one line, `ok: ...` naming the schema or model version, exit 0; or
the errors, exit 1. No API server and no AWS Batch are reached.
"""
import argparse
import json
import sys


def kubernetes(doc, versions):
    try:
        import kubernetes_validate
    except ImportError:
        sys.exit("validate-deploy.py: the kubernetes-validate package is missing (python3 -m pip install kubernetes-validate)")
    from importlib.metadata import version as package_version
    for version in versions.split(","):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            print(f"invalid {doc.get('kind')} for Kubernetes {version}: {e.message} (at {'/'.join(str(p) for p in e.path)})")
            return 1
    print(f"ok: {doc.get('apiVersion')} {doc.get('kind')} valid for Kubernetes {versions} (strict; kubernetes-validate {package_version('kubernetes-validate')})")
    return 0


def batch(doc, operation):
    import botocore
    import botocore.session
    from botocore.validate import ParamValidator
    model = botocore.session.get_session().get_service_model("batch")
    shape = model.operation_model(operation).input_shape
    report = ParamValidator().validate(doc, shape)
    if report.has_errors():
        print(f"invalid {operation} input: {report.generate_report()}")
        return 1
    print(f"ok: {operation} input valid for the AWS Batch model {model.api_version} (botocore {botocore.__version__})")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["kubernetes", "register-job-definition", "submit-job"])
    p.add_argument("file", nargs="?", help="JSON file (default: standard input)")
    p.add_argument("--kubernetes-version", default="1.33")
    a = p.parse_args()
    text = open(a.file).read() if a.file else sys.stdin.read()
    doc = json.loads(text)
    if a.kind == "kubernetes":
        return kubernetes(doc, a.kubernetes_version)
    return batch(doc, {"register-job-definition": "RegisterJobDefinition", "submit-job": "SubmitJob"}[a.kind])


if __name__ == "__main__":
    sys.exit(main())
