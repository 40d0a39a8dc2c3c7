//! Secrets out of URLs before they are shown: the one place every log line, error message and
//! status output passes a configured URL through (OTLP endpoints, the Redis URL).
//!
//! Works on text, not on a parsed URL, so an invalid URL (the one an error message echoes) is
//! masked as well as a valid one. It errs towards masking: a stray `@` hides more than needed.

use std::{borrow::Cow, ops::Range};

/// What replaces a secret.
const MASK: &str = "***";

/// `url` with its userinfo (`user:password@`) and the values of secret-looking query or fragment
/// parameters (`token`, `api_key`, `sig`, …) replaced by `***`. Borrows when there is nothing to hide.
pub fn redact_url(url: &str) -> Cow<'_, str> {
    let spans = secret_spans(url);
    if spans.is_empty() {
        return Cow::Borrowed(url);
    }
    let mut out = String::with_capacity(url.len());
    let mut copied = 0;
    for span in spans {
        out.push_str(&url[copied..span.start]);
        out.push_str(MASK);
        copied = span.end;
    }
    out.push_str(&url[copied..]);
    Cow::Owned(out)
}

/// The secrets `redact_url` hides, as written and percent-decoded: what a collector or proxy may
/// echo in an error answer about the URL, to be hidden there too (`hide`).
pub fn url_secrets(url: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    for span in secret_spans(url) {
        let raw = &url[span];
        let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy().into_owned();
        if decoded != raw {
            secrets.push(decoded);
        }
        secrets.push(raw.to_string());
    }
    secrets.retain(|secret| !secret.is_empty());
    secrets
}

/// `text` with every occurrence of the given secrets replaced by `***`.
pub fn hide<'t>(text: &'t str, secrets: &[String]) -> Cow<'t, str> {
    let mut text = Cow::Borrowed(text);
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = Cow::Owned(text.replace(secret.as_str(), MASK));
        }
    }
    text
}

/// Where the secrets are: the whole userinfo, and the value of each secret-looking parameter.
fn secret_spans(url: &str) -> Vec<Range<usize>> {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    // The last `@` ends the userinfo, as URL parsers read it; a password may itself hold `@`, `/` or `?`.
    let userinfo = url[after_scheme..].rfind('@').map(|at| after_scheme + at);
    let mut spans: Vec<Range<usize>> = userinfo.map(|at| after_scheme..at).into_iter().collect();
    let rest = userinfo.map_or(after_scheme, |at| at + 1);
    // Query and fragment pairs alike: OAuth puts `access_token` in the fragment.
    let Some(mut at) = url[rest..].find(['?', '#']).map(|i| rest + i + 1) else { return spans };
    while at <= url.len() {
        let end = url[at..].find(SEPARATORS).map_or(url.len(), |i| at + i);
        if let Some((key, _)) = url[at..end].split_once('=').filter(|(key, _)| is_secret_key(key)) {
            spans.push(at + key.len() + 1..end);
        }
        at = end + 1;
    }
    spans
}

/// What separates the pairs of a query or fragment (and the query from the fragment).
const SEPARATORS: [char; 4] = ['&', ';', '#', '?'];

/// Parameter names that carry credentials: compared without case, `-` or `_`, so `access_token`,
/// `X-Amz-Signature` and `apiKey` all match.
fn is_secret_key(key: &str) -> bool {
    let key: String = percent_encoding::percent_decode_str(key)
        .decode_utf8_lossy()
        .chars()
        .filter(|c| !matches!(c, '-' | '_'))
        .collect();
    let key = key.to_ascii_lowercase();
    const EXACT: [&str; 6] = ["key", "sig", "pwd", "pass", "auth", "code"];
    const CONTAINS: [&str; 8] =
        ["token", "secret", "passw", "apikey", "signature", "credential", "authorization", "session"];
    EXACT.contains(&key.as_str()) || CONTAINS.iter().any(|part| key.contains(part))
}

#[cfg(test)]
mod tests {
    use super::{hide, redact_url, url_secrets};

    #[test]
    fn userinfo_is_masked_whole() {
        assert_eq!(redact_url("http://user:hunter2@host:4318/v1/logs"), "http://***@host:4318/v1/logs");
        assert_eq!(redact_url("rediss://:hunter2@redis:6380/2"), "rediss://***@redis:6380/2");
        assert_eq!(redact_url("https://ghp_TOKEN@host/"), "https://***@host/");
    }

    #[test]
    fn a_password_with_url_delimiters_is_masked_whole() {
        assert_eq!(redact_url("http://u:pa/ss?w@rd@host/v1/logs"), "http://***@host/v1/logs");
    }

    #[test]
    fn secret_query_and_fragment_values_are_masked_and_others_kept() {
        assert_eq!(
            redact_url("https://c.example/v1/logs?tenant=a&api_key=s1&X-Amz-Signature=s2&sig=s3#access_token=s4"),
            "https://c.example/v1/logs?tenant=a&api_key=***&X-Amz-Signature=***&sig=***#access_token=***"
        );
        assert_eq!(redact_url("http://h/?token=s&token=t"), "http://h/?token=***&token=***");
    }

    #[test]
    fn a_url_without_secrets_is_borrowed_unchanged() {
        for url in ["http://collector:4318/v1/logs", "http://h/?tenant=a&region=eu", "not a url", ""] {
            assert!(matches!(redact_url(url), std::borrow::Cow::Borrowed(u) if u == url), "{url}");
        }
    }

    #[test]
    fn the_secrets_of_a_url_are_found_as_written_and_decoded_and_hidden_in_text() {
        let secrets = url_secrets("http://u:p%40ss@h/v1/logs?tenant=a&api_key=k1&sig=");
        assert_eq!(secrets, ["u:p@ss", "u:p%40ss", "k1"]);
        assert_eq!(hide("401: bad api_key=k1 for u:p@ss", &secrets), "401: bad api_key=*** for ***");
        assert!(matches!(hide("nothing here", &secrets), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn invalid_urls_are_masked_too() {
        assert_eq!(redact_url("http://user:hunter2@host:port:x/"), "http://***@host:port:x/");
        assert_eq!(redact_url("user:hunter2@host"), "***@host");
        assert_eq!(redact_url("ht tp://h?apikey=s3cret"), "ht tp://h?apikey=***");
    }
}
