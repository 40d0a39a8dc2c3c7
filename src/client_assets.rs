//! The browser client, served by the gateway itself: `GET /client-telemetry.js` (so a plain
//! `<script>` tag works on any site) and a demo page at `GET /demo`. Both are the committed files of
//! `client/`, embedded at build time; CI fails if the committed script drifts from its source.
//!
//! The script is gzip-compressed once, at first use, and sent compressed to browsers that accept
//! it; it carries an `ETag` (304 on `If-None-Match`) and answers `HEAD`. It is also served under a
//! content-hashed name, `/client-telemetry.<hash>.js`, cacheable for a year since its content never
//! changes under that name.
//! The challenge solver is served at `GET` of the ingest route itself (docs/security.md), so a client
//! finds it wherever the route is, whatever prefix a proxy adds.

use std::{io::Write, sync::LazyLock};

use actix_web::{
    HttpRequest, HttpResponse, guard,
    http::header::{self, HeaderValue},
    web,
};
use flate2::{Compression, write::GzEncoder};

const SCRIPT: &str = include_str!("../client/dist/client-telemetry.min.js");
const SOLVER: &str = include_str!("../client/dist/client-telemetry-solver.min.js");
const DEMO: &str = include_str!("../client/demo/index.html");

struct Script {
    gzip: Vec<u8>,
    /// The first 16 hex digits of the SHA-256 of the script: its hashed name and (quoted) ETag.
    hash: String,
    etag: String,
}

static BUILT: LazyLock<Script> = LazyLock::new(|| {
    let mut gzip = GzEncoder::new(Vec::new(), Compression::best());
    gzip.write_all(SCRIPT.as_bytes()).expect("writing to memory cannot fail");
    let digest = ring::digest::digest(&ring::digest::SHA256, SCRIPT.as_bytes());
    let hash: String = digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
    Script { gzip: gzip.finish().expect("writing to memory cannot fail"), etag: format!("\"{hash}\""), hash }
});

/// The content-hashed path of the current build, e.g. `/client-telemetry.0123456789abcdef.js`.
pub fn hashed_path() -> String {
    format!("/client-telemetry.{}.js", BUILT.hash)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    let get_or_head = || web::route().guard(guard::Any(guard::Get()).or(guard::Head()));
    cfg.route("/client-telemetry.js", get_or_head().to(script))
        .route("/client-telemetry.{hash}.js", get_or_head().to(hashed_script))
        .route("/demo", web::get().to(demo));
}

async fn script(request: HttpRequest) -> HttpResponse {
    serve(&request, "public, max-age=300")
}

async fn hashed_script(request: HttpRequest, hash: web::Path<String>) -> HttpResponse {
    if *hash != BUILT.hash {
        // An older build's name: the page should load the current one.
        return HttpResponse::NotFound().finish();
    }
    serve(&request, "public, max-age=31536000, immutable")
}

fn serve(request: &HttpRequest, cache_control: &'static str) -> HttpResponse {
    let built = &*BUILT;
    let not_modified = if_none_match(request, &built.etag);
    let mut response = if not_modified { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    response
        .insert_header((header::CACHE_CONTROL, cache_control))
        .insert_header((header::ETAG, built.etag.as_str()))
        .insert_header((header::VARY, "Accept-Encoding"));
    if not_modified {
        return response.finish();
    }
    response.content_type("text/javascript; charset=utf-8");
    if accepts_gzip(request.headers().get(header::ACCEPT_ENCODING)) {
        response.insert_header((header::CONTENT_ENCODING, "gzip")).body(built.gzip.clone())
    } else {
        response.body(SCRIPT)
    }
}

fn if_none_match(request: &HttpRequest, etag: &str) -> bool {
    request
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag))
}

/// Whether `Accept-Encoding` lists gzip (or `*`) without `q=0`.
fn accepts_gzip(header: Option<&HeaderValue>) -> bool {
    let Some(value) = header.and_then(|v| v.to_str().ok()) else { return false };
    value.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or_default();
        let refused = parts.any(|p| p.strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()) == Some(0.0));
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
    })
}

pub async fn solver() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(SOLVER)
}

async fn demo() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(DEMO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_chosen_only_when_accepted() {
        let accepts = |v: &str| accepts_gzip(Some(&HeaderValue::from_str(v).unwrap()));
        assert!(accepts("gzip, deflate, br"));
        assert!(accepts("br;q=1.0, gzip;q=0.8"));
        assert!(accepts("*"));
        assert!(!accepts("br"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("gzip; q=0.0"));
        assert!(!accepts_gzip(None));
    }
}
