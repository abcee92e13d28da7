use serde::Serialize;

/// An error as the OpenAI API reports it:
/// `{"error":{"message","type","param","code"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorBody<'a> {
    /// The error.
    pub error: ErrorObject<'a>,
}

/// The `error` member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorObject<'a> {
    /// What was wrong, for a person.
    pub message: &'a str,
    /// `invalid_request_error`, `server_error`, ...
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// The request parameter at fault, if any.
    pub param: Option<&'a str>,
    /// Machine-readable code.
    pub code: Option<&'a str>,
}

impl ErrorBody<'_> {
    /// The body as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        crate::answer::to_json(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_openais_members() {
        let body = ErrorBody {
            error: ErrorObject {
                message: "bad \"x\"",
                kind: "invalid_request_error",
                param: Some("x"),
                code: None,
            },
        };
        let v: serde_json::Value = serde_json::from_slice(&body.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {"message": "bad \"x\"", "type": "invalid_request_error", "param": "x", "code": null}})
        );
    }
}
