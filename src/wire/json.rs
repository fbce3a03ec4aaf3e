//! OTLP/JSON <-> protobuf (stub: the JSON helper replaces this file, keeping these signatures).

/// Why a JSON body is not a valid OTLP/JSON ExportTraceServiceRequest.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(pub String);

/// OTLP/JSON ExportTraceServiceRequest -> protobuf encoding of the same request.
pub fn request_from_json(_json: &[u8]) -> Result<Vec<u8>, JsonError> {
    Err(JsonError("not implemented".into()))
}

/// Protobuf ExportTraceServiceRequest -> OTLP/JSON, one line, no trailing newline.
pub fn request_to_json(_proto: &[u8]) -> Result<String, JsonError> {
    Err(JsonError("not implemented".into()))
}
