//! Reading the request body: accepted encodings, a size cap that holds for
//! chunked bodies as well as announced ones and for the decompressed bytes of a gzip body, and a
//! deadline that cuts off a client trickling its body in.

use std::io::Read;

use actix_web::{HttpRequest, http::header, web};
use bytes::BytesMut;
use flate2::read::MultiGzDecoder;
use futures_util::StreamExt;

use super::response::IngestError;
use crate::setting::{self, at_least};

setting::component! {
    /// Bounds on the request body.
    pub struct BodyConfig {
        /// request body cap (at least 64), announced, streamed or decompressed
        max_body_bytes: usize = 256 * 1024,
        /// accept `Content-Encoding: gzip`
        accept_gzip: bool = true,
        /// refuse (413) a gzip body that inflates beyond this many times its size (at least 2)
        max_gzip_ratio: usize = 100,
        /// time from the headers to the end of the body (408 and close)
        body_read_timeout_ms: u64 = 10_000,
    }
}

impl BodyConfig {
    pub fn resolve(&self) -> Result<BodyLimits, setting::Error> {
        Ok(BodyLimits {
            max_body_bytes: at_least("max_body_bytes", self.max_body_bytes, 64)?,
            accept_gzip: self.accept_gzip,
            max_gzip_ratio: at_least("max_gzip_ratio", self.max_gzip_ratio, 2)?,
            body_read_timeout: std::time::Duration::from_millis(at_least(
                "body_read_timeout_ms",
                self.body_read_timeout_ms,
                1,
            )?),
        })
    }
}

/// Bounds on the request body.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    pub max_body_bytes: usize,
    /// Accept `Content-Encoding: gzip`; `max_body_bytes` then bounds the decompressed body.
    pub accept_gzip: bool,
    /// Decompressed bytes per compressed byte beyond which a body is refused as a bomb.
    pub max_gzip_ratio: usize,
    /// Time from the end of the headers to the end of the body (cuts off trickling clients).
    pub body_read_timeout: std::time::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
}

/// None or `identity`, and `gzip` when accepted; anything else is refused before the body is read.
pub fn content_encoding(request: &HttpRequest, limits: &BodyLimits) -> Result<Encoding, IngestError> {
    let Some(value) = request.headers().get(header::CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    let value = value.to_str().unwrap_or("").trim().to_ascii_lowercase();
    match value.as_str() {
        "" | "identity" => Ok(Encoding::Identity),
        "gzip" | "x-gzip" if limits.accept_gzip => Ok(Encoding::Gzip),
        _ => Err(IngestError::UnsupportedEncoding(value.chars().take(64).collect())),
    }
}

/// The body length `Content-Length` announces, if it is a number. Also read by the listener's
/// `Expect` hook, which refuses an announced body over the limit before `100 Continue`.
pub fn announced_length(headers: &header::HeaderMap) -> Option<usize> {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// The whole body, or 413 as soon as it is known to be larger than the limit, or 408 when it has
/// not all arrived within the body read timeout.
pub async fn read_limited(
    request: &HttpRequest,
    mut payload: web::Payload,
    limits: &BodyLimits,
) -> Result<BytesMut, IngestError> {
    let limit = limits.max_body_bytes;
    let announced = announced_length(request.headers());
    if announced.is_some_and(|n| n > limit) {
        return Err(IngestError::PayloadTooLarge { limit });
    }
    let deadline = tokio::time::Instant::now() + limits.body_read_timeout;
    let mut body = BytesMut::with_capacity(announced.unwrap_or(8 * 1024).min(limit));
    loop {
        let chunk = match tokio::time::timeout_at(deadline, payload.next()).await {
            Err(_elapsed) => return Err(IngestError::BodyTimeout(limits.body_read_timeout)),
            Ok(None) => return Ok(body),
            Ok(Some(chunk)) => chunk.map_err(|e| IngestError::BodyRead(e.to_string()))?,
        };
        if body.len() + chunk.len() > limit {
            return Err(IngestError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
}

/// Decompresses a gzip body, reading no more than the size limit or `max_gzip_ratio` times the
/// compressed size, whichever is smaller, so a bomb costs at most that much memory.
pub fn gunzip(compressed: &[u8], limits: &BodyLimits) -> Result<Vec<u8>, IngestError> {
    let by_ratio = compressed.len().saturating_mul(limits.max_gzip_ratio);
    let cap = limits.max_body_bytes.min(by_ratio);
    let mut out = Vec::with_capacity(cap.min(compressed.len().saturating_mul(8)));
    MultiGzDecoder::new(compressed)
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| IngestError::InvalidGzip(e.to_string()))?;
    match out.len() > cap {
        false => Ok(out),
        true if cap == limits.max_body_bytes => Err(IngestError::DecompressedTooLarge { limit: cap }),
        true => Err(IngestError::CompressionRatio { max: limits.max_gzip_ratio }),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::{Compression, write::GzEncoder};

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn limits(max_body_bytes: usize, max_gzip_ratio: usize) -> BodyLimits {
        let defaults = BodyConfig::default().resolve().unwrap();
        BodyLimits { max_body_bytes, max_gzip_ratio, ..defaults }
    }

    #[test]
    fn the_limit_applies_to_decompressed_bytes_from_both_sides() {
        let exact = vec![b' '; 1000];
        assert_eq!(gunzip(&gzip(&exact), &limits(1000, 1000)).unwrap().len(), 1000);
        let over = vec![b' '; 1001];
        assert!(matches!(
            gunzip(&gzip(&over), &limits(1000, 1000)),
            Err(IngestError::DecompressedTooLarge { limit: 1000 })
        ));
    }

    #[test]
    fn the_ratio_cap_stops_a_bomb_before_the_size_limit() {
        let bomb = gzip(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        let result = gunzip(&bomb, &limits(100 << 20, 100));
        assert!(matches!(result, Err(IngestError::CompressionRatio { max: 100 })));
        // The same ratio, under the cap, passes.
        let text: Vec<u8> = (0..5000u32).flat_map(|i| format!("{i},").into_bytes()).collect();
        assert!(gunzip(&gzip(&text), &limits(100 << 20, 100)).is_ok());
    }

    #[test]
    fn garbage_and_truncated_gzip_are_refused() {
        assert!(matches!(gunzip(b"not gzip at all", &limits(1000, 100)), Err(IngestError::InvalidGzip(_))));
        let whole = gzip(b"{\"events\":[]}");
        assert!(matches!(gunzip(&whole[..whole.len() - 4], &limits(1000, 100)), Err(IngestError::InvalidGzip(_))));
        let mut trailing = whole.clone();
        trailing.extend_from_slice(b"junk");
        assert!(matches!(gunzip(&trailing, &limits(1000, 100)), Err(IngestError::InvalidGzip(_))));
    }
}
