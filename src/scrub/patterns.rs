//! What counts as PII or a secret: one pattern per kind, and the check that confirms a candidate.
//!
//! Patterns find candidates cheaply and generously; the checks (Luhn, IBAN mod 97, address
//! parsing, surrounding characters) throw out the look-alikes. The patterns use ASCII word
//! boundaries so the lazy DFA never has to give up on non-ASCII text.

use std::ops::Range;

/// A kind of redaction: the `kind` label of `client_telemetry_redactions_total` and the marker
/// `[REDACTED:<kind>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Email,
    Jwt,
    Bearer,
    ApiKey,
    Secret,
    Card,
    Iban,
    Phone,
    Ipv4,
    Ipv6,
    /// A context value whose key is named like `password`, `token`, `email`, …
    SensitiveKey,
    Custom,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Email,
        Kind::Jwt,
        Kind::Bearer,
        Kind::ApiKey,
        Kind::Secret,
        Kind::Card,
        Kind::Iban,
        Kind::Phone,
        Kind::Ipv4,
        Kind::Ipv6,
        Kind::SensitiveKey,
        Kind::Custom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Jwt => "jwt",
            Kind::Bearer => "bearer",
            Kind::ApiKey => "api_key",
            Kind::Secret => "secret",
            Kind::Card => "card",
            Kind::Iban => "iban",
            Kind::Phone => "phone",
            Kind::Ipv4 => "ipv4",
            Kind::Ipv6 => "ipv6",
            Kind::SensitiveKey => "sensitive_key",
            Kind::Custom => "custom",
        }
    }

    pub fn marker(self) -> &'static str {
        match self {
            Kind::Email => "[REDACTED:email]",
            Kind::Jwt => "[REDACTED:jwt]",
            Kind::Bearer => "[REDACTED:bearer]",
            Kind::ApiKey => "[REDACTED:api_key]",
            Kind::Secret => "[REDACTED:secret]",
            Kind::Card => "[REDACTED:card]",
            Kind::Iban => "[REDACTED:iban]",
            Kind::Phone => "[REDACTED:phone]",
            Kind::Ipv4 => "[REDACTED:ipv4]",
            Kind::Ipv6 => "[REDACTED:ipv6]",
            Kind::SensitiveKey => "[REDACTED:sensitive_key]",
            Kind::Custom => "[REDACTED:custom]",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str().eq_ignore_ascii_case(name.trim()))
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// Built-in patterns in priority order: at the same starting position the first one wins, so the
/// specific shapes (a JWT, a provider key) come before the generic ones.
pub(super) fn builtin() -> Vec<(Kind, String)> {
    const B: &str = r"(?-u:\b)";
    let ipv4_octet = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
    vec![
        (Kind::Jwt, format!(r"{B}eyJ[A-Za-z0-9_-]{{8,}}\.eyJ[A-Za-z0-9_-]{{8,}}\.[A-Za-z0-9_-]*")),
        (Kind::Bearer, format!(r"{B}(?i:bearer|basic)[ \t]+[A-Za-z0-9._~+/-]{{8,}}=*")),
        // An Authorization header written into a message: whatever its scheme (`Token`, `Digest`, …).
        (
            Kind::Bearer,
            format!(
                r#"{B}(?i:proxy-)?(?i:authorization)["']?[ \t]*[:=][ \t]*["']?(?:[A-Za-z][A-Za-z0-9-]*[ \t]+)?[^\s"',;]+"#
            ),
        ),
        (
            Kind::ApiKey,
            [
                "(?:AKIA|ASIA)[0-9A-Z]{16}",
                "gh[pousr]_[A-Za-z0-9]{36,}",
                "github_pat_[A-Za-z0-9_]{22,}",
                "glpat-[A-Za-z0-9_-]{20,}",
                "xox[abposr]-[A-Za-z0-9-]{10,}",
                "[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",
                "AIza[0-9A-Za-z_-]{35}",
                "sk-[A-Za-z0-9_-]{20,}",
                "npm_[A-Za-z0-9]{36}",
                r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}",
            ]
            .map(|p| format!("{B}{p}{B}"))
            .join("|"),
        ),
        (
            Kind::Secret,
            format!(
                r#"{B}(?i:api[_-]?key|access[_-]?token|auth[_-]?token|refresh[_-]?token|client[_-]?secret|token|secret|password|passwd|pwd|key)["']?[ \t]*[=:][ \t]*["']?[^\s"'&,;<>]+"#
            ),
        ),
        // A Cookie header's pairs, all of them (the names of session cookies say little alone).
        (Kind::Secret, format!(r#"{B}(?i:set-cookie|cookie)["']?[ \t]*:[ \t]*["']?[^\s=;:"',]+=[^\r\n"]*"#)),
        (Kind::Email, email()),
        (Kind::Iban, format!(r"{B}[A-Z]{{2}}[0-9]{{2}}(?: ?[A-Z0-9]){{11,30}}{B}")),
        (Kind::Card, format!(r"{B}[2-6][0-9](?:[ -]?[0-9]){{11,17}}{B}")),
        // Groups split by dots or by several spaces: a first group of four, then groups of three to six.
        (Kind::Card, format!(r"{B}[2-6][0-9]{{3}}(?:(?:\.|[ ]{{2,3}})[0-9]{{3,6}}){{2,4}}{B}")),
        // A card number as a number with an exponent (`4.111111111111111e15`), as JSON may write it.
        (Kind::Card, format!(r"{B}[2-6](?:\.?[0-9]){{11,18}}[eE]\+?[0-9]{{1,2}}{B}")),
        (Kind::Ipv6, ipv6()),
        (Kind::Ipv4, format!(r"{B}{ipv4_octet}(?:\.{ipv4_octet}){{3}}{B}")),
        (
            Kind::Phone,
            [
                r"\+[0-9]{1,3}(?:[ .-]?\(?[0-9]{1,4}\)?){1,6}",
                r"(?:\([0-9]{3}\)[ ]?|(?-u:\b)[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}(?-u:\b)",
                r"(?-u:\b)0[0-9]{2,4}[ /-][0-9]{3,4}[ -]?[0-9]{3,4}(?-u:\b)",
            ]
            .join("|"),
        ),
    ]
}

/// Letters of any script (internationalised addresses), and `%40` for a URL-encoded `@`. Scripts
/// written without spaces (Chinese, Japanese, Thai, …) do not run into other letters, and an ASCII
/// top-level domain ends at a word boundary: `連絡先はjane@example.comです` loses the address only.
fn email() -> String {
    let unspaced = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}ー";
    let local = format!(r"(?:[[\p{{L}}\p{{M}}\p{{N}}._%+-]--[{unspaced}]]+|[{unspaced}\p{{N}}._%+-]+)");
    format!(r"{local}(?:@|%40)(?:[\p{{L}}\p{{M}}\p{{N}}-]+\.)+(?:[A-Za-z]{{2,}}(?-u:\b)|[\p{{L}}\p{{M}}]{{2,}})")
}

/// Only an address's shape is a candidate: eight groups, six and an IPv4 tail, or a `::`
/// (from a word boundary, or not right after a word: `std::fs` is no candidate). A group and a
/// colon (`Error 42: timeout`), a clock time or a MAC address never is, so ordinary messages stay
/// on the scrubber's clean path. An optional zone (`%eth0`) belongs to the address.
fn ipv6() -> String {
    const B: &str = r"(?-u:\b)";
    const NOT_B: &str = r"(?-u:\B)";
    let h = "[0-9A-Fa-f]{1,4}";
    let v4 = r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}";
    // An IPv4 tail first: greedy hex groups would otherwise stop at its first octet.
    let tail = format!("(?:(?:{h}:){{0,5}}{v4}|{h}(?::{h}){{0,6}})");
    let full = format!("{B}(?:{h}:){{7}}{h}");
    let full_v4 = format!("{B}(?:{h}:){{6}}{v4}");
    let compressed = format!("(?:{B}{h}(?::{h}){{0,6}}|{NOT_B})::{tail}?");
    format!("(?:{full}|{full_v4}|{compressed})(?:%[0-9A-Za-z_-]+)?")
}

/// Confirms a candidate of `kind` at `span` in `text`; returns the part to replace.
pub(super) fn confirm(kind: Kind, text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let found = &text[span.clone()];
    let confirmed = match kind {
        Kind::Bearer if !found.as_bytes()[0].eq_ignore_ascii_case(&b'b') => {
            // Not `bearer …` or `basic …`: an `Authorization:` header.
            return authorization_credentials(found).map(|value| span.start + value.start..span.end);
        }
        Kind::Bearer => bearer_token(found.split_ascii_whitespace().nth(1).unwrap_or("")),
        Kind::Secret => return secret_value(found).map(|value| span.start + value.start..span.start + value.end),
        Kind::Card if found.contains(['e', 'E']) => {
            found.parse::<f64>().ok().and_then(integral).is_some_and(is_card_number)
        }
        Kind::Card => luhn_valid(found),
        Kind::Iban => iban_valid(found),
        Kind::Phone => phone_digits_plausible(found),
        Kind::Ipv4 => !looks_like_version(text, &span),
        Kind::Ipv6 => ipv6_valid(text, &span),
        Kind::Email | Kind::Jwt | Kind::ApiKey | Kind::Custom | Kind::SensitiveKey => true,
    };
    confirmed.then_some(span)
}

/// After `bearer` a random-looking token, or a long one (`bearer abcdefghijklmnopqrstuv`), not a word.
fn bearer_token(token: &str) -> bool {
    looks_secret(token) || token.len() >= 20
}

/// The credentials of `Authorization: <scheme> <credentials>`: always after a scheme (`Token abc`),
/// and a lone value only if it looks random (`authorization: required` stays).
fn authorization_credentials(found: &str) -> Option<Range<usize>> {
    let separator = found.find([':', '='])?;
    let value = found[separator + 1..].trim_start_matches([' ', '\t', '"', '\'']);
    let start = found.len() - value.len();
    match value.split_once([' ', '\t']) {
        Some((_scheme, credentials)) => {
            let credentials = credentials.trim_start_matches([' ', '\t']);
            Some(found.len() - credentials.len()..found.len())
        }
        None => looks_secret(value).then_some(start..found.len()),
    }
}

/// A card number sent as a number: 13 to 19 digits, a card network's first digit, Luhn-valid.
pub(super) fn is_card_number(n: u64) -> bool {
    if n < 1_000_000_000_000 {
        return false;
    }
    let digits = n.to_string();
    (b'2'..=b'6').contains(&digits.as_bytes()[0]) && luhn_valid(&digits)
}

/// A whole number written as a float (`4111111111111111.0`, `4.111111111111111e15`, `-4111…`),
/// as its magnitude; fractions and numbers past `u64` are not.
pub(super) fn integral(f: f64) -> Option<u64> {
    let f = f.abs();
    (f.fract() == 0.0 && f < u64::MAX as f64).then_some(f as u64)
}

/// Names after which any value is a secret; for `key` and `token` only a random-looking one is.
const ALWAYS_SECRET: &[&str] =
    &["password", "passwd", "pwd", "secret", "clientsecret", "client_secret", "client-secret"];

/// The value part of `name=value` (or `"name": "value"`), if it is to be redacted.
fn secret_value(found: &str) -> Option<Range<usize>> {
    let separator = found.find(['=', ':'])?;
    let name = found[..separator].trim_end_matches([' ', '\t', '"', '\'']).to_ascii_lowercase();
    if name.ends_with("cookie") {
        // Every pair of the header, from the first name on.
        let value = found[separator + 1..].trim_start_matches([' ', '\t', '"', '\'']);
        return Some(found.len() - value.len()..found.len());
    }
    let start = separator + 1 + found[separator + 1..].len()
        - found[separator + 1..].trim_start_matches([' ', '\t', '"', '\'']).len();
    // In a stack frame (`at f (https://app/x?token=…:12:5)`) the position is not part of the value.
    let end = found.len() - stack_position_len(&found[start..]);
    let value = &found[start..end];
    let redact = !value.is_empty() && (ALWAYS_SECRET.contains(&name.as_str()) || looks_secret(value));
    redact.then_some(start..end)
}

/// The length of a stack frame's `:line:column`, with the frame's closing `)`, ending `value`.
fn stack_position_len(value: &str) -> usize {
    let rest = value.strip_suffix(')').unwrap_or(value);
    fn number(s: &str) -> Option<&str> {
        let before = s.trim_end_matches(|c: char| c.is_ascii_digit());
        if before.len() == s.len() { None } else { before.strip_suffix(':') }
    }
    match number(rest).and_then(number) {
        Some(before) => value.len() - before.len(),
        None => 0,
    }
}

/// A token rather than a word: letters and digits mixed, or long and mixed-case.
pub(super) fn looks_secret(value: &str) -> bool {
    let has = |f: fn(&u8) -> bool| value.as_bytes().iter().any(f);
    let (digit, lower, upper) = (has(u8::is_ascii_digit), has(u8::is_ascii_lowercase), has(u8::is_ascii_uppercase));
    value.len() >= 8 && ((digit && (lower || upper)) || (value.len() >= 12 && lower && upper))
}

pub(super) fn luhn_valid(number: &str) -> bool {
    let digits: Vec<u32> = number.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d })
        .sum();
    sum % 10 == 0
}

/// ISO 13616: move the first four characters to the end, letters to 10..35, remainder mod 97 is 1.
pub(super) fn iban_valid(iban: &str) -> bool {
    let compact: Vec<u8> = iban.bytes().filter(|b| *b != b' ').collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut remainder = 0u32;
    for &b in tail.iter().chain(head) {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        remainder = if value >= 10 { (remainder * 100 + value) % 97 } else { (remainder * 10 + value) % 97 };
    }
    remainder == 1
}

fn phone_digits_plausible(found: &str) -> bool {
    let digits = found.bytes().filter(u8::is_ascii_digit).count();
    if found.starts_with('+') { (8..=15).contains(&digits) } else { (9..=12).contains(&digits) }
}

/// `Chrome/120.0.0.0`, `v1.2.3.4` and five-part versions look like addresses but are not.
fn looks_like_version(text: &str, span: &Range<usize>) -> bool {
    let before = text[..span.start].bytes().next_back();
    let mut after = text[span.end..].bytes();
    matches!(before, Some(b'/' | b'v' | b'V' | b'.'))
        || (after.next() == Some(b'.') && after.next().is_some_and(|b| b.is_ascii_digit()))
}

/// A real IPv6 address (its zone aside), not `face::bad`, `Type::method` or part of a longer token.
/// A full stop after it ends a sentence unless a word or a number goes on after it.
fn ipv6_valid(text: &str, span: &Range<usize>) -> bool {
    let found = &text[span.clone()];
    let address = found.split_once('%').map_or(found, |(address, _zone)| address);
    let before = text[..span.start].chars().next_back();
    let mut after = text[span.end..].chars();
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let glued_before = word(before) || matches!(before, Some(':' | '.'));
    let glued_after = match after.next() {
        Some('.') => word(after.next()),
        c => word(c) || c == Some(':'),
    };
    !glued_before
        && !glued_after
        && address.bytes().any(|b| b.is_ascii_digit())
        && address.parse::<std::net::Ipv6Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_test_cards_and_refuses_near_misses() {
        for card in ["4111111111111111", "4111 1111 1111 1111", "5555-5555-5555-4444", "378282246310005"] {
            assert!(luhn_valid(card), "{card}");
        }
        for not in ["4111111111111112", "1234567890123", "411111111111"] {
            assert!(!luhn_valid(not), "{not}");
        }
    }

    #[test]
    fn iban_check_digits_are_verified() {
        for iban in ["DE89370400440532013000", "GB82 WEST 1234 5698 7654 32", "FR1420041010050500013M02606"] {
            assert!(iban_valid(iban), "{iban}");
        }
        for not in ["DE89370400440532013001", "GB00 WEST 1234 5698 7654 32", "DE8937040044"] {
            assert!(!iban_valid(not), "{not}");
        }
    }

    #[test]
    fn a_secret_looks_random() {
        assert!(looks_secret("a1b2c3d4e5"));
        assert!(looks_secret("QWxhZGRpbjpvcGVu"));
        for word in ["Enter", "functionality", "password", "12345678", "ArrowDown"] {
            assert!(!looks_secret(word), "{word}");
        }
    }

    #[test]
    fn every_kind_parses_from_its_name() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
            assert_eq!(kind.marker(), format!("[REDACTED:{}]", kind.as_str()));
        }
        assert_eq!(Kind::parse("nope"), None);
    }
}
