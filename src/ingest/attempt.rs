//! What the limiter is asked about one request: the client's address, plus the session and batch
//! ids the client names, each from a header or, for `sendBeacon` (which cannot set headers), a query
//! parameter. Ids are read only when the setting that uses them is on; so is a challenge's proof.

use std::net::Ipv4Addr;

use actix_web::{HttpRequest, web};

use super::{formats::Format, response::IngestError};
use crate::{
    challenge::PROOF_HEADER,
    client_ip::ClientIdentity,
    event::Event,
    ratelimit::{Attempt, Limiter},
};

pub const SESSION_HEADER: &str = "x-session-id";
pub const BATCH_HEADER: &str = "x-batch-id";

/// The ids named in the query string. Given twice, an id is ambiguous: refused, not guessed.
#[derive(Default)]
struct IdParams {
    session: Option<Result<String, Twice>>,
    batch: Option<Result<String, Twice>>,
    proof: Option<Result<String, Twice>>,
}

struct Twice;

impl IdParams {
    fn parse(query: &str) -> Self {
        let mut params = IdParams::default();
        let pairs = web::Query::<Vec<(String, String)>>::from_query(query).map(|q| q.0).unwrap_or_default();
        for (name, value) in pairs {
            let slot = match name.as_str() {
                "session" => &mut params.session,
                "batch" => &mut params.batch,
                "proof" => &mut params.proof,
                _ => continue,
            };
            *slot = Some(if slot.is_some() { Err(Twice) } else { Ok(value) });
        }
        params
    }
}

/// `format` says which header names the session (none for OTLP) and whether there is a batch id;
/// the query parameters are the native format's (`sendBeacon`).
pub fn attempt(
    request: &HttpRequest,
    format: Format,
    identity: &ClientIdentity,
    limiter: &Limiter,
    challenge: bool,
    max_id_bytes: usize,
) -> Result<(Attempt, Option<String>), IngestError> {
    let client = identity.client_ip(request).unwrap_or(Ipv4Addr::UNSPECIFIED.into());
    let session_header = format.session_header();
    // A token is bound to a session: with the challenge on (our client's), the session id is read too.
    let challenge = challenge && format == Format::Native;
    let sessions = (limiter.limits_sessions() || challenge) && session_header.is_some();
    let batch_header = format.batch_header();
    let dedup = limiter.deduplicates() && batch_header.is_some();
    if !sessions && !dedup {
        return Ok((Attempt { client, session: None, batch: None, verified: false }, None));
    }
    let query = if request.query_string().is_empty() || format != Format::Native {
        IdParams::default()
    } else {
        IdParams::parse(request.query_string())
    };
    // The header first; the query parameter for `sendBeacon`. Either one given twice is refused.
    let named = |what: &'static str, header: &str, param: Option<Result<String, Twice>>| {
        let mut values = request.headers().get_all(header);
        let value = values.next().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let twice = IngestError::DuplicateId { what };
        match (value, param) {
            (Some(_), _) if values.next().is_some() => Err(twice),
            (Some(value), _) => Ok(Some(value)),
            (None, Some(Err(Twice))) => Err(twice),
            (None, param) => Ok(param.and_then(Result::ok)),
        }
    };
    let max = max_id_bytes;
    let session = match sessions {
        true => named("session", session_header.unwrap_or(SESSION_HEADER), query.session)?
            .map(|id| valid_id("session", id, max))
            .transpose()?,
        false => None,
    };
    let batch = match dedup {
        true => named("batch", batch_header.unwrap_or(BATCH_HEADER), query.batch)?
            .map(|id| valid_id("batch", id, max))
            .transpose()?,
        false => None,
    };
    let proof = match challenge {
        true => named("proof", PROOF_HEADER, query.proof)?,
        false => None,
    };
    Ok((Attempt { client, session, batch, verified: false }, proof))
}

/// The session of a request whose format cannot name one before its body (OTLP: its records'
/// `session.id`): the first record's that names one, if it is a valid id. Records of one export come
/// from one page, so one session; should they name several, the first is charged for the whole
/// request. The other formats have a header for it: a request of theirs naming none is limited by
/// its IP alone, as documented.
pub fn session_in_records(format: Format, events: &[Event<'_>], max_id_bytes: usize) -> Option<Box<str>> {
    if format.session_header().is_some() {
        return None;
    }
    let id = events.iter().map(|event| &event.session_id).find(|id| !id.is_empty())?;
    valid_id("session", id.to_string(), max_id_bytes).ok()
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
