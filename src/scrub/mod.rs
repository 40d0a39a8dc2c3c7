//! PII scrubbing: what an event says is redacted before it is logged, and so before it is forwarded.
//!
//! Every enabled pattern is compiled into one multi-pattern regex, so a string is scanned once
//! whatever the number of kinds; a candidate is confirmed by its kind's check (Luhn, IBAN, …)
//! before it is replaced by a visible `[REDACTED:<kind>]`. Context values whose key is named like
//! a secret are redacted whole.

mod patterns;

use std::borrow::Cow;

pub use patterns::Kind;
use regex_automata::{Anchored, Input, PatternID, meta::Regex, util::syntax};
use serde_json::{Map, Value};

use crate::{
    event::{Event, Exception, Origin},
    setting,
};

setting::component! {
    /// PII scrubbing.
    pub struct ScrubConfig {
        /// redact PII before logging and forwarding
        scrub_enabled: bool = true,
        /// kinds to leave alone, e.g. `ipv4,phone` (the kinds: [security.md](security.md#pii-scrubbing)); an unknown kind stops start-up
        #[serde(deserialize_with = "setting::comma_list")]
        scrub_disabled_kinds: Vec<String> = Vec::new(),
        /// extra regular expressions, redacted as `custom`; one pattern or a JSON array (`'["ORD-[0-9]{6}", "ACME-[A-Z]{4}"]'`); one that does not compile or can match the empty string stops start-up
        #[serde(deserialize_with = "setting::pattern_list")]
        scrub_custom_patterns: Vec<String> = Vec::new(),
        /// context keys whose values are never scrubbed (normalised like sensitive keys)
        #[serde(deserialize_with = "setting::comma_list")]
        scrub_allow_keys: Vec<String> = Vec::new(),
        /// fragments of context key names whose string values are redacted whole (case, `_`, `-` and `.` ignored); replaces the default list
        #[serde(deserialize_with = "setting::comma_list")]
        scrub_sensitive_keys: Vec<String> = DEFAULT_SENSITIVE_KEYS.map(String::from).to_vec(),
    }
}

const DEFAULT_SENSITIVE_KEYS: [&str; 11] = [
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "authorization",
    "apikey",
    "email",
    "cookie",
    "credential",
    "privatekey",
];

impl ScrubConfig {
    pub fn resolve(&self) -> Result<ScrubSettings, setting::Error> {
        let names = Kind::ALL.map(Kind::as_str).join(", ");
        let disabled_kinds = self
            .scrub_disabled_kinds
            .iter()
            .map(|k| {
                Kind::parse(k)
                    .ok_or_else(|| setting::invalid_key("scrub_disabled_kinds", k, &format!("expected one of {names}")))
            })
            .collect::<Result<_, _>>()?;
        for pattern in &self.scrub_custom_patterns {
            check_pattern(pattern).map_err(|reason| setting::invalid_key("scrub_custom_patterns", pattern, &reason))?;
        }
        Ok(ScrubSettings {
            enabled: self.scrub_enabled,
            disabled_kinds,
            custom_patterns: self.scrub_custom_patterns.clone(),
            allow_keys: self.scrub_allow_keys.clone(),
            sensitive_keys: self.scrub_sensitive_keys.clone(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct ScrubSettings {
    pub enabled: bool,
    pub disabled_kinds: Vec<Kind>,
    /// Operators' own patterns, redacted as `custom`.
    pub custom_patterns: Vec<String>,
    /// Context keys whose values are never scrubbed (compared lower-case, letters and digits only).
    pub allow_keys: Vec<String>,
    /// Context keys containing one of these (same normalisation) have their values redacted whole.
    pub sensitive_keys: Vec<String>,
}

/// Redactions made in one event, by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Redactions([u32; Kind::ALL.len()]);

impl Redactions {
    fn add(&mut self, kind: Kind) {
        self.0[kind.index()] += 1;
    }

    pub fn get(&self, kind: Kind) -> u32 {
        self.0[kind.index()]
    }

    pub fn total(&self) -> u32 {
        self.0.iter().sum()
    }

    /// The kinds with at least one redaction, with their count.
    pub fn iter(&self) -> impl Iterator<Item = (Kind, u32)> + '_ {
        Kind::ALL.into_iter().map(|k| (k, self.get(k))).filter(|(_, n)| *n > 0)
    }
}

pub struct Scrubber {
    regex: Regex,
    /// The clean path's one scan: every PII pattern and every sensitive key name at once (see
    /// `may_need_scrubbing`).
    clean_check: Regex,
    /// The kind of each pattern, by pattern id.
    kinds: Vec<Kind>,
    /// Strings shorter than this cannot match any pattern and are not scanned.
    min_len: usize,
    enabled: [bool; Kind::ALL.len()],
    allow_keys: Vec<String>,
    /// Matches a normalised key containing one of the sensitive names (None: none configured).
    sensitive_keys: Option<Regex>,
    /// Matches a normalised key ending with one: the key names the secret itself (`userPassword`).
    secret_keys: Option<Regex>,
    /// Whether an event's strings may be scanned joined together (no pattern anchors at `^`/`$`).
    joinable: bool,
}

thread_local! {
    /// Reused by the fast path: the event's text joined.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Scrubber {
    /// Fails only on a custom pattern that does not compile (the message says which).
    pub fn new(settings: &ScrubSettings) -> Result<Self, String> {
        let mut enabled = [true; Kind::ALL.len()];
        for kind in &settings.disabled_kinds {
            enabled[kind.index()] = false;
        }
        let custom = settings.custom_patterns.iter().map(|p| (Kind::Custom, p.clone()));
        let (kinds, sources): (Vec<Kind>, Vec<String>) =
            patterns::builtin().into_iter().chain(custom).filter(|(kind, _)| enabled[kind.index()]).unzip();
        for (kind, source) in kinds.iter().zip(&sources) {
            if *kind == Kind::Custom {
                check_pattern(source)?;
            }
        }
        let regex = Regex::new_many(&sources).map_err(|e| e.to_string())?;
        let key_names: Vec<String> = match enabled[Kind::SensitiveKey.index()] {
            true => settings.sensitive_keys.iter().map(|n| normalize_key(n)).filter(|n| !n.is_empty()).collect(),
            false => Vec::new(),
        };
        let clean_check =
            Regex::new_many(&[sources.clone(), key_names.iter().map(|n| spaced_name(n)).collect()].concat())
                .map_err(|e| e.to_string())?;
        let hirs = syntax::parse_many(&sources).map_err(|e| e.to_string())?;
        let min_len = hirs.iter().filter_map(|h| h.properties().minimum_len()).min().unwrap_or(usize::MAX).max(1);
        let joinable = hirs.iter().all(|h| !h.properties().look_set().contains_anchor());
        Ok(Self {
            joinable,
            regex,
            clean_check,
            kinds,
            min_len,
            enabled,
            allow_keys: settings.allow_keys.iter().map(|k| normalize_key(k)).collect(),
            sensitive_keys: sensitive_names_regex(&settings.sensitive_keys, "")?,
            secret_keys: sensitive_names_regex(&settings.sensitive_keys, "$")?,
        })
    }

    /// Scrubs the batch's context in place: every string of app, page, browser and SDK, and the
    /// `User-Agent` (the client address is kept only when asked for, and then as it is).
    pub fn scrub_origin(&self, origin: &mut Origin<'_>) -> Redactions {
        let mut redactions = Redactions::default();
        let Origin { app, page_url, browser, sdk, user_agent, client_address: _, attributes } = origin;
        let fields = [
            &mut app.name,
            &mut app.version,
            &mut app.environment,
            page_url,
            &mut browser.language,
            &mut browser.platform,
            &mut sdk.name,
            &mut sdk.version,
            user_agent,
        ];
        for field in fields.into_iter().flatten() {
            self.scrub_cow(field, &mut redactions);
        }
        for brand in &mut browser.brands {
            if let Cow::Owned(scrubbed) = self.scrub_text(brand, &mut redactions) {
                *brand = scrubbed;
            }
        }
        if let Some(attributes) = attributes {
            self.scrub_object(&mut attributes.0, &mut redactions);
        }
        redactions
    }

    /// A validated JSON object (keys and values), rewritten only when something was redacted.
    fn scrub_object(&self, object: &mut Cow<'_, serde_json::value::RawValue>, redactions: &mut Redactions) {
        let mut map: Map<String, Value> = serde_json::from_str(object.get()).expect("a validated object is JSON");
        let before = redactions.total();
        self.scrub_map(&mut map, Under::Plain, redactions);
        if redactions.total() != before {
            *object = Cow::Owned(serde_json::value::to_raw_value(&map).expect("a JSON map serialises"));
        }
    }

    fn scrub_cow(&self, text: &mut Cow<'_, str>, redactions: &mut Redactions) {
        if let Cow::Owned(scrubbed) = self.scrub_text(text, redactions) {
            *text = Cow::Owned(scrubbed);
        }
    }

    /// Scrubs the event's message, scope, exception and context (keys and values) in place.
    pub fn scrub_event(&self, event: &mut Event<'_>) -> Redactions {
        let mut redactions = Redactions::default();
        if !self.may_need_scrubbing(event) {
            return redactions;
        }
        self.scrub_cow(&mut event.message, &mut redactions);
        self.scrub_cow(&mut event.scope, &mut redactions);
        if let Some(Exception { kind, message, stacktrace }) = &mut event.exception {
            for field in [kind, message, stacktrace].into_iter().flatten() {
                self.scrub_cow(field, &mut redactions);
            }
        }
        if let Some(context) = &mut event.context {
            // Only a context that changed is written anew; otherwise it is logged as sent.
            self.scrub_object(context, &mut redactions);
        }
        redactions
    }

    /// Whether the event takes the clean path: one scan, nothing to redact (benchmarks check it).
    #[doc(hidden)]
    pub fn takes_clean_path(&self, event: &Event<'_>) -> bool {
        !self.may_need_scrubbing(event)
    }

    /// The fast path for the common clean event: one scan over its message, scope, exception and the
    /// context's JSON text, joined by NUL, with the text's quotes turned into NULs too. Validation
    /// refuses NUL inside strings, and without a backslash in the context each of its strings
    /// (keys and values) is in the text exactly as it reads, between two quotes; so whatever
    /// matches one string alone matches the joined text too, as it did between NULs. Sensitive
    /// key names are in the same scan, each as its letters with anything but letters and digits
    /// allowed between them (`spaced_name`): a key that normalises to contain one matches there.
    /// A match anywhere, even one spanning two strings or in the message, sends the event down the
    /// exact path: this may flag a clean event, never miss one. Card-like JSON numbers are caught
    /// by the card pattern, as their digits are in the text.
    fn may_need_scrubbing(&self, event: &Event<'_>) -> bool {
        if !self.joinable {
            return true;
        }
        let context = event.context.as_deref().map_or("", serde_json::value::RawValue::get);
        if context.contains('\\') {
            // Escapes: the text is not the strings it holds; only the exact path can tell.
            return true;
        }
        SCRATCH.with_borrow_mut(|joined| {
            joined.clear();
            joined.extend_from_slice(event.message.as_bytes());
            joined.push(0);
            joined.extend_from_slice(event.scope.as_bytes());
            joined.push(0);
            if let Some(exception) = &event.exception {
                for field in [&exception.kind, &exception.message, &exception.stacktrace].into_iter().flatten() {
                    joined.extend_from_slice(field.as_bytes());
                    joined.push(0);
                }
            }
            joined.extend(context.bytes().map(|b| if b == b'"' { 0 } else { b }));
            self.clean_check.is_match(Input::new(joined.as_slice()))
        })
    }

    /// The text with every confirmed match replaced by its marker; borrowed when nothing matched.
    pub fn scrub_text<'t>(&self, text: &'t str, redactions: &mut Redactions) -> Cow<'t, str> {
        if text.len() < self.min_len || self.kinds.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out: Option<String> = None;
        let (mut copied, mut at) = (0, 0);
        while let Some(found) = self.regex.search(&Input::new(text).span(at..text.len())) {
            let next_char = found.start() + text[found.start()..].chars().next().map_or(1, char::len_utf8);
            match self.confirm_at(text, found.pattern(), found.start()) {
                Some((kind, range)) => {
                    let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
                    out.push_str(&text[copied..range.start]);
                    out.push_str(kind.marker());
                    redactions.add(kind);
                    (copied, at) = (range.end, range.end.max(next_char));
                }
                // A look-alike: look again from the next character, where another kind may start.
                None => at = next_char,
            }
            if at >= text.len() {
                break;
            }
        }
        match out {
            Some(mut out) => {
                out.push_str(&text[copied..]);
                Cow::Owned(out)
            }
            None => Cow::Borrowed(text),
        }
    }

    /// The first pattern, in priority order, that matches at `start` and is confirmed.
    fn confirm_at(&self, text: &str, first: PatternID, start: usize) -> Option<(Kind, std::ops::Range<usize>)> {
        let kind = self.kinds[first.as_usize()];
        if let Some(range) = patterns::confirm(kind, text, start..self.end_of(text, first, start)?) {
            return Some((kind, range));
        }
        (0..self.kinds.len()).filter(|&p| p != first.as_usize()).find_map(|p| {
            let pattern = PatternID::new(p).ok()?;
            let kind = self.kinds[p];
            patterns::confirm(kind, text, start..self.end_of(text, pattern, start)?).map(|range| (kind, range))
        })
    }

    fn end_of(&self, text: &str, pattern: PatternID, start: usize) -> Option<usize> {
        let input = Input::new(text).span(start..text.len()).anchored(Anchored::Pattern(pattern));
        self.regex.search(&input).map(|m| m.end())
    }

    fn scrub_map(&self, map: &mut Map<String, Value>, under: Under, redactions: &mut Redactions) {
        let mut renamed = Vec::new();
        for (key, value) in map.iter_mut() {
            let normalized = normalize_key(key);
            if !self.allow_keys.contains(&normalized) {
                let under = under.max(self.under(&normalized));
                self.scrub_value(value, under, redactions);
            }
            if let Cow::Owned(new_key) = self.scrub_text(key, redactions) {
                renamed.push((key.clone(), new_key));
            }
        }
        for (old, mut new) in renamed {
            let value = map.remove(&old).expect("the key was just seen");
            // Two keys can scrub to the same marker: keep both values.
            let base_len = new.len();
            let mut n = 1;
            while map.contains_key(&new) {
                n += 1;
                new.truncate(base_len);
                new.push_str(&format!("#{n}"));
            }
            map.insert(new, value);
        }
    }

    /// Under a sensitive key every string is redacted whole; numbers too when the key ends with the
    /// sensitive name (`pin_password: 1234`), not when it only qualifies it (`maxTokens: 500`,
    /// `tokenCount: 3`). Card numbers go whatever the key; booleans never carry a secret.
    fn scrub_value(&self, value: &mut Value, under: Under, redactions: &mut Redactions) {
        match value {
            Value::String(_) | Value::Number(_) if under == Under::SecretKey => {
                *value = Value::String(Kind::SensitiveKey.marker().to_string());
                redactions.add(Kind::SensitiveKey);
            }
            Value::String(s) if under == Under::SensitiveKey => {
                *s = Kind::SensitiveKey.marker().to_string();
                redactions.add(Kind::SensitiveKey);
            }
            Value::String(s) => {
                if let Cow::Owned(scrubbed) = self.scrub_text(s, redactions) {
                    *s = scrubbed;
                }
            }
            Value::Number(n) if self.enabled[Kind::Card.index()] && is_card_number(n) => {
                *value = Value::String(Kind::Card.marker().to_string());
                redactions.add(Kind::Card);
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.scrub_value(item, under, redactions)),
            Value::Object(map) => self.scrub_map(map, under, redactions),
            Value::Number(_) | Value::Bool(_) | Value::Null => {}
        }
    }

    fn under(&self, normalized_key: &str) -> Under {
        if !self.is_sensitive(normalized_key) {
            Under::Plain
        } else if self.secret_keys.as_ref().is_some_and(|r| r.is_match(normalized_key)) {
            Under::SecretKey
        } else {
            Under::SensitiveKey
        }
    }

    fn is_sensitive(&self, normalized_key: &str) -> bool {
        self.enabled[Kind::SensitiveKey.index()]
            && self.sensitive_keys.as_ref().is_some_and(|r| r.is_match(normalized_key))
    }
}

/// Whether an operator's pattern compiles, and matches something non-empty (an empty match
/// would insert a marker between every two characters).
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    let hir = syntax::parse(pattern).map_err(|e| format!("not a valid regular expression: {e}"))?;
    match hir.properties().minimum_len() {
        Some(0) => Err("the pattern can match the empty string".into()),
        _ => Ok(()),
    }
}

/// A card number as any JSON number form: integer, negative, with a decimal point or an exponent.
fn is_card_number(n: &serde_json::Number) -> bool {
    let magnitude = match (n.as_u64(), n.as_i64()) {
        (Some(u), _) => Some(u),
        (None, Some(i)) => Some(i.unsigned_abs()),
        (None, None) => n.as_f64().and_then(patterns::integral),
    };
    magnitude.is_some_and(patterns::is_card_number)
}

/// What a context value sits under: the strongest of its own key and its parents' keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Under {
    Plain,
    /// A key containing a sensitive name: strings are redacted whole.
    SensitiveKey,
    /// A key ending with one: numbers are redacted too.
    SecretKey,
}

/// One search for all the names instead of a substring search per name (normalised names are
/// letters and digits, so they need no escaping); `suffix` anchors them (`$`: at the key's end).
fn sensitive_names_regex(names: &[String], suffix: &str) -> Result<Option<Regex>, String> {
    let names: Vec<String> = names.iter().map(|n| normalize_key(n)).filter(|n| !n.is_empty()).collect();
    if names.is_empty() {
        return Ok(None);
    }
    Regex::new(&format!("(?:{}){suffix}", names.join("|"))).map(Some).map_err(|e| e.to_string())
}

/// A normalised sensitive name as a pattern matching any text that normalises to contain it:
/// `apikey` matches `X-Api_Key` and `"api","key"`. Case-insensitive; normalised names are ASCII
/// letters and digits, which need no escaping.
fn spaced_name(normalized: &str) -> String {
    let letters: Vec<String> = normalized.chars().map(String::from).collect();
    format!("(?i:{})", letters.join("[^0-9A-Za-z]*"))
}

/// `X-Api_Key` and `xapikey` are the same key name.
fn normalize_key(key: &str) -> String {
    key.bytes().filter(u8::is_ascii_alphanumeric).map(|b| char::from(b.to_ascii_lowercase())).collect()
}

#[cfg(test)]
mod tests;
