//! Secrets out of URLs before they are shown: the one place every log line, error message and
//! status output passes a configured URL through (OTLP endpoints, the Redis URL).
//!
//! Works on text, not on a parsed URL, so an invalid URL (the one an error message echoes) is
//! masked as well as a valid one. It errs towards masking: a stray `@` hides more than needed.

use std::borrow::Cow;

/// What replaces a secret.
const MASK: &str = "***";

/// `url` with its userinfo (`user:password@`) and the values of secret-looking query or fragment
/// parameters (`token`, `api_key`, `sig`, …) replaced by `***`. Borrows when there is nothing to hide.
pub fn redact_url(url: &str) -> Cow<'_, str> {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    // The last `@` ends the userinfo, as URL parsers read it; a password may itself hold `@`, `/` or `?`.
    let userinfo = url[after_scheme..].rfind('@').map(|at| after_scheme + at);
    let rest_start = userinfo.map_or(after_scheme, |at| at + 1);
    let query = url[rest_start..].find(['?', '#']).map(|i| rest_start + i);
    let secret_params = query.is_some_and(|q| params(&url[q + 1..]).any(|(key, _)| is_secret_key(key)));
    if userinfo.is_none() && !secret_params {
        return Cow::Borrowed(url);
    }
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..after_scheme]);
    if userinfo.is_some() {
        out.push_str(MASK);
        out.push('@');
    }
    let Some(q) = query else {
        out.push_str(&url[rest_start..]);
        return Cow::Owned(out);
    };
    out.push_str(&url[rest_start..q]);
    // Query and fragment pairs alike: OAuth puts `access_token` in the fragment.
    let mut tail = &url[q..];
    while let Some(separator) = tail.chars().next() {
        out.push(separator);
        let end = tail[1..].find(['&', ';', '#', '?']).map_or(tail.len(), |i| i + 1);
        let pair = &tail[1..end];
        match pair.split_once('=') {
            Some((key, _)) if is_secret_key(key) => {
                out.push_str(key);
                out.push('=');
                out.push_str(MASK);
            }
            _ => out.push_str(pair),
        }
        tail = &tail[end..];
    }
    Cow::Owned(out)
}

/// The `key=value` pairs of a query or fragment.
fn params(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query.split(['&', ';', '#', '?']).filter_map(|pair| pair.split_once('='))
}

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
    use super::redact_url;

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
    fn invalid_urls_are_masked_too() {
        assert_eq!(redact_url("http://user:hunter2@host:port:x/"), "http://***@host:port:x/");
        assert_eq!(redact_url("user:hunter2@host"), "***@host");
        assert_eq!(redact_url("ht tp://h?apikey=s3cret"), "ht tp://h?apikey=***");
    }
}
