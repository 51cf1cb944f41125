"""Responses of the HTTP API validate against the schemas of the OpenAPI
document that studiod serves (web/openapi.json)."""

import jsonschema

from conftest import wait_until


def validator_for(document, path, method, status):
    """Returns a JSON-Schema validator for the documented JSON response."""
    answer = document["paths"][path][method]["responses"][str(status)]
    schema = answer["content"]["application/json"]["schema"]
    root = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    root["components"] = document["components"]
    return jsonschema.Draft202012Validator(root)


def test_answers_match_the_document(studio):
    studio.write("hello.py", "print('hello')\n")
    studio.run("run", "--project", "schema", "--experiment", "schema-0", "hello.py")
    wait_until("the experiment to finish", lambda: studio.experiment("schema-0")["status"] == "finished")
    status, document = studio.get("/api/v1/openapi.json")
    assert status == 200
    jsonschema.Draft202012Validator.check_schema({"components": document["components"]})

    cases = [
        ("/api/v1/experiments", "/api/v1/experiments", 200),
        ("/api/v1/experiments?fields=key,status&limit=1", "/api/v1/experiments", 200),
        ("/api/v1/experiments?sort=colour", "/api/v1/experiments", 400),
        ("/api/v1/experiments/schema-0", "/api/v1/experiments/{key}", 200),
        ("/api/v1/experiments/nope", "/api/v1/experiments/{key}", 404),
        ("/api/v1/projects", "/api/v1/projects", 200),
        ("/api/v1/users", "/api/v1/users", 200),
        ("/api/v1/daemon", "/api/v1/daemon", 200),
        ("/api/v1/tensorboard", "/api/v1/tensorboard", 200),
        ("/api/v1/experiments/nope/output", "/api/v1/experiments/{key}/output", 404),
    ]
    for url, path, expected in cases:
        status, body = studio.get(url)
        assert status == expected, f"{url}: {status} {body}"
        validator = validator_for(document, path, "get", status)
        errors = [error.message for error in validator.iter_errors(body)]
        assert not errors, f"{url}: {errors}"


def test_schema_rejects_a_wrong_answer(studio):
    """The validation can fail: a record without its key does not pass."""
    status, document = studio.get("/api/v1/openapi.json")
    assert status == 200
    validator = validator_for(document, "/api/v1/experiments/{key}", "get", 200)
    assert not validator.is_valid({"status": "finished"})
    assert not validator.is_valid(
        {"key": "k", "owner": "o", "script": "s", "args": [], "status": "done", "time_added": 1, "host": "h"}
    )
