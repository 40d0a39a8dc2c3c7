//! What the limiter is asked about one request: the client's address, plus the session and batch
//! ids the client names, each from a header or, for `sendBeacon` (which cannot set headers), a query
//! parameter. Ids are read only when the setting that uses them is on; so is a challenge's proof.

use std::net::Ipv4Addr;

use actix_web::{HttpRequest, web};
use serde::Deserialize;

use super::response::IngestError;
use crate::{
    challenge::PROOF_HEADER,
    client_ip::ClientIdentity,
    ratelimit::{Attempt, Limiter},
};

pub const SESSION_HEADER: &str = "x-session-id";
pub const BATCH_HEADER: &str = "x-batch-id";

#[derive(Deserialize, Default)]
struct IdParams {
    session: Option<String>,
    batch: Option<String>,
    proof: Option<String>,
}

pub fn attempt(
    request: &HttpRequest,
    identity: &ClientIdentity,
    limiter: &Limiter,
    challenge: bool,
    max_id_bytes: usize,
) -> Result<(Attempt, Option<String>), IngestError> {
    let client = identity.client_ip(request).unwrap_or(Ipv4Addr::UNSPECIFIED.into());
    // A token is bound to a session: with the challenge on, the session id is read too.
    let (sessions, dedup) = (limiter.limits_sessions() || challenge, limiter.deduplicates());
    if !sessions && !dedup {
        return Ok((Attempt { client, session: None, batch: None, verified: false }, None));
    }
    let query = if request.query_string().is_empty() {
        IdParams::default()
    } else {
        web::Query::<IdParams>::from_query(request.query_string()).map(|q| q.0).unwrap_or_default()
    };
    let named = |header: &str, param: Option<String>| {
        let value = request.headers().get(header).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        value.or(param)
    };
    let max = max_id_bytes;
    let session = match sessions {
        true => named(SESSION_HEADER, query.session).map(|id| valid_id("session", id, max)).transpose()?,
        false => None,
    };
    let batch = match dedup {
        true => named(BATCH_HEADER, query.batch).map(|id| valid_id("batch", id, max)).transpose()?,
        false => None,
    };
    let proof = if challenge { named(PROOF_HEADER, query.proof) } else { None };
    Ok((Attempt { client, session, batch, verified: false }, proof))
}

/// An id becomes part of a Redis key: a short token of URL-safe characters, nothing else.
fn valid_id(what: &'static str, id: String, max: usize) -> Result<Box<str>, IngestError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '~');
    if id.is_empty() || id.len() > max || !id.chars().all(allowed) {
        return Err(IngestError::InvalidId { what, max });
    }
    Ok(id.into_boxed_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_url_safe_tokens() {
        assert_eq!(&*valid_id("session", "3f2c-9a_b.c:d~e".into(), 128).unwrap(), "3f2c-9a_b.c:d~e");
        for bad in ["", "has space", "{ip:1.2.3.4}", "a/b", "é", &"x".repeat(129)] {
            assert!(valid_id("session", bad.into(), 128).is_err(), "{bad:?}");
        }
    }
}
