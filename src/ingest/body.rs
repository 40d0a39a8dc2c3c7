//! Reading the request body: accepted content types and a size cap that holds for chunked bodies
//! as well as announced ones.

use actix_web::{HttpRequest, http::header, web};
use bytes::BytesMut;
use futures_util::StreamExt;

use super::response::IngestError;

/// `application/json`, `text/plain` (what `sendBeacon` sends for a string, any charset) or none.
pub fn check_content_type(request: &HttpRequest) -> Result<(), IngestError> {
    let Some(value) = request.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "" | "application/json" | "text/plain" => Ok(()),
        _ => Err(IngestError::UnsupportedMediaType(essence)),
    }
}

/// The whole body, or 413 as soon as it is known to be larger than `limit`.
pub async fn read_limited(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<BytesMut, IngestError> {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|n| n > limit) {
        return Err(IngestError::PayloadTooLarge { limit });
    }
    let mut body = BytesMut::with_capacity(announced.unwrap_or(8 * 1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| IngestError::BodyRead(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(IngestError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
