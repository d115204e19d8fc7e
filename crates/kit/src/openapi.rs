//! What every service's OpenAPI document says because the kit makes it
//! true, whatever the handler's annotations say: its errors are
//! `application/problem+json`, a JSON body can be refused as malformed
//! (400), too large (413), of another type (415) or invalid (422), and a
//! malformed query as 400.

use serde_json::{Value, json};
use utoipa::openapi::OpenApi;

use crate::problem::Problem;

const PROBLEM_REF: &str = "#/components/schemas/Problem";
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// `doc` with the answers of the kit's extractors and layers documented,
/// as the JSON that is served (utoipa's types do not all read back what
/// they write: an OAuth2 code flow would come back as an implicit one).
pub fn complete(doc: OpenApi) -> Value {
    let mut value = serde_json::to_value(&doc).expect("an OpenAPI document serializes");
    complete_json(&mut value);
    value
}

fn complete_json(doc: &mut Value) {
    let mut problems = false;
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            for method in METHODS {
                if let Some(operation) = item.get_mut(method) {
                    problems |= complete_operation(operation);
                }
            }
        }
    }
    if problems {
        let schemas = doc
            .as_object_mut()
            .expect("a document is an object")
            .entry("components")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("components is an object")
            .entry("schemas")
            .or_insert_with(|| json!({}));
        if let Some(schemas) = schemas.as_object_mut()
            && !schemas.contains_key("Problem")
        {
            schemas.insert("Problem".into(), problem_schema());
            schemas.insert("FieldError".into(), field_error_schema());
        }
    }
}

/// Completes one operation; whether it now names the `Problem` schema.
fn complete_operation(operation: &mut Value) -> bool {
    let json_body = operation
        .pointer("/requestBody/content/application~1json")
        .is_some();
    let query = operation
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|parameters| parameters.iter().any(|p| p["in"] == "query"));
    let Some(responses) = operation
        .get_mut("responses")
        .and_then(Value::as_object_mut)
    else {
        return false;
    };
    let mut problems = false;
    for response in responses.values_mut() {
        problems |= problem_content_type(response);
    }
    let mut add = |status: &str, description: &str| {
        if !responses.contains_key(status) {
            responses.insert(status.to_owned(), problem_response(description));
            problems = true;
        }
    };
    if json_body {
        add("400", "The body is not JSON");
        add("413", "The body is larger than 1 MiB");
        add("415", "The body is not `application/json`");
        add(
            "422",
            "The body does not have the fields and values asked for",
        );
    }
    if query {
        add("400", "A query parameter is malformed");
    }
    problems
}

/// Moves a `Problem` documented as `application/json` to
/// `application/problem+json`, which is what is sent; whether it did.
fn problem_content_type(response: &mut Value) -> bool {
    let Some(content) = response.get_mut("content").and_then(Value::as_object_mut) else {
        return false;
    };
    let is_problem = content
        .get("application/json")
        .is_some_and(|c| c.pointer("/schema/$ref") == Some(&json!(PROBLEM_REF)));
    if is_problem {
        let problem = content.remove("application/json").expect("just seen");
        content.insert("application/problem+json".into(), problem);
    }
    is_problem
}

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": PROBLEM_REF}}},
    })
}

fn problem_schema() -> Value {
    serde_json::to_value(<Problem as utoipa::PartialSchema>::schema())
        .expect("the Problem schema serializes")
}

fn field_error_schema() -> Value {
    serde_json::to_value(<crate::problem::FieldError as utoipa::PartialSchema>::schema())
        .expect("the FieldError schema serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_problem_json_and_extractor_answers_are_documented() {
        let mut doc = json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": {"/things": {
                "post": {
                    "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                    "responses": {
                        "201": {"description": "made", "content": {"application/json": {"schema": {"type": "object"}}}},
                        "409": {"description": "taken", "content": {"application/json": {"schema": {"$ref": PROBLEM_REF}}}},
                    },
                },
                "get": {
                    "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer"}}],
                    "responses": {"200": {"description": "ok"}},
                },
            }},
        });
        complete_json(&mut doc);
        let post = &doc["paths"]["/things"]["post"]["responses"];
        assert!(post["201"]["content"]["application/json"].is_object());
        assert!(post["409"]["content"]["application/problem+json"].is_object());
        assert!(post["409"]["content"].get("application/json").is_none());
        for status in ["400", "413", "415", "422"] {
            assert_eq!(
                post[status]["content"]["application/problem+json"]["schema"]["$ref"],
                PROBLEM_REF
            );
        }
        let get = &doc["paths"]["/things"]["get"]["responses"];
        assert!(get["400"].is_object());
        assert!(get.get("415").is_none());
        assert!(doc["components"]["schemas"]["Problem"].is_object());
    }
}
