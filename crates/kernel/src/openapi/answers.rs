//! What every operation of the document declares besides its own answers, added when
//! [`super::Routes::openapi`] assembles a module's part: the answers any route can give
//! (`405` with `Allow`, the unmatched-route `404`), and an example on every problem
//! response that shows that response's own status and `code` (the `Problem` schema's
//! examples alone would show one status for every error).

use utoipa::openapi::path::{Operation, Paths};
use utoipa::openapi::{Ref, RefOr, Response};

use crate::http::PROBLEM_JSON;

/// The component of the unmatched-route `404`.
pub(super) const ROUTE_NOT_FOUND: &str = "RouteNotFound";
/// The component of `405 method_not_allowed`.
pub(super) const METHOD_NOT_ALLOWED: &str = "MethodNotAllowed";

/// What [`ROUTE_NOT_FOUND`] says, also added to an operation's own `404`.
pub(super) const ROUTE_NOT_FOUND_TEXT: &str = "`route_not_found`: the path names no \
    route (a path parameter with a `/` in it, say).";

/// Adds the shared answers and the examples to every operation of `paths`.
pub(super) fn complete(paths: &mut Paths) {
    for item in paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            complete_operation(operation);
        }
    }
}

fn complete_operation(operation: &mut Operation) {
    let responses = &mut operation.responses.responses;
    match responses.get_mut("404") {
        Some(RefOr::T(own)) if !own.description.contains("route_not_found") => {
            own.description = format!("{} {ROUTE_NOT_FOUND_TEXT}", own.description);
        }
        Some(_) => {}
        None => {
            let shared = Ref::from_response_name(ROUTE_NOT_FOUND);
            responses.insert("404".to_owned(), RefOr::Ref(shared));
        }
    }
    responses
        .entry("405".to_owned())
        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(METHOD_NOT_ALLOWED)));
    for (status, response) in responses.iter_mut() {
        if let (RefOr::T(response), Ok(status)) = (response, status.parse()) {
            add_example(status, response);
        }
    }
}

/// Sets the example of `response`'s problem+json body, unless it has one: its status, and
/// the first `code` its description names.
pub(super) fn add_example(status: u16, response: &mut Response) {
    let Some(content) = response.content.get_mut(PROBLEM_JSON) else {
        return;
    };
    if content.example.is_some() {
        return;
    }
    let code = first_code(&response.description).unwrap_or("bad_request");
    let detail = response
        .description
        .split_once(&format!("`{code}`"))
        .map(|(_, rest)| rest.trim_start_matches([':', ',', ' ', ')']))
        .and_then(|rest| rest.split([';', '.']).next())
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .unwrap_or(code);
    let title = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    content.example = Some(serde_json::json!({
        "type": format!("urn:emporium:problem:{code}"),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }));
}

/// The first `` `snake_case` `` word of `description`.
fn first_code(description: &str) -> Option<&str> {
    description.split('`').skip(1).step_by(2).find(|word| {
        !word.is_empty()
            && word
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
            && word.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_is_the_first_snake_case_word() {
        assert_eq!(
            first_code("`invalid_path`: the id is not a UUID; `malformed_json`"),
            Some("invalid_path")
        );
        assert_eq!(first_code("An `If-Match` that is `stale`"), Some("stale"));
        assert_eq!(first_code("no code"), None);
    }
}
