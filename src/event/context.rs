//! An event's `context`: a JSON object kept as the text the client sent, checked within the
//! context bounds (size, keys, depth), with no NUL and no duplicate key.

use std::{
    borrow::Cow,
    cell::{Cell, RefCell},
    fmt,
};

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::{Invalid, Limits, Reason};

pub(super) fn parse_context<'a>(raw: &'a RawValue, limits: &Limits) -> Result<&'a RawValue, Invalid> {
    let json = raw.get();
    if json.len() > limits.max_context_bytes {
        return Err(Invalid::new(
            Reason::InvalidContext,
            format!("`context` is {} bytes, more than the limit of {}", json.len(), limits.max_context_bytes),
        ));
    }
    // A raw value starts at its first token: an object starts with `{`.
    if !json.starts_with('{') {
        return Err(Invalid::new(Reason::InvalidContext, "`context` must be a JSON object"));
    }
    if plainly_within_bounds(json.as_bytes(), limits) {
        return Ok(raw);
    }
    walk(json, limits).map_err(|e| Invalid::new(Reason::InvalidContext, format!("`context`: {e}")))?;
    Ok(raw)
}

/// The reference check: the serde walk, which says what is wrong and where.
fn walk(json: &str, limits: &Limits) -> Result<(), serde_json::Error> {
    let keys = Cell::new(0);
    let seen = RefCell::new(Vec::new());
    let seed = BoundedValue { depth: 0, keys: &keys, seen: &seen, limits };
    let mut deserializer = serde_json::Deserializer::from_str(json);
    seed.deserialize(&mut deserializer).and_then(|()| deserializer.end())
}

/// How deep and how many keys `plainly_within_bounds` follows on the stack; beyond, the walk decides.
const SCAN_DEPTH: usize = 16;
const SCAN_KEYS: usize = 64;

/// Whether `json`, the valid JSON text of an object (a `RawValue`'s, so its syntax, strings and
/// escapes are already checked), is certainly what `walk` accepts: within depth and key count,
/// no duplicate key. `false` when it is not, and whenever a byte scan cannot tell cheaply (a key
/// with an escape, a `\u` escape, which may be a NUL or a lone surrogate, a number with an
/// exponent or of more than 20 bytes, which may overflow): `walk` then decides and words the refusal.
///
/// Why by hand: every event has a context, and the walk (serde's per-value dispatch, the keys
/// collected in a `RefCell`) was the largest part of validating one.
/// `the_scan_never_accepts_what_the_walk_refuses` checks the scan against it.
fn plainly_within_bounds(json: &[u8], limits: &Limits) -> bool {
    let max_depth = limits.max_context_depth.min(SCAN_DEPTH);
    let max_keys = limits.max_context_keys.min(SCAN_KEYS);
    // The keys (start, end) of the objects being scanned, innermost last.
    let mut keys = [(0, 0); SCAN_KEYS];
    let mut open_keys = 0;
    let mut total_keys = 0;
    // Per open container: whether it is an object, and where its keys start in `keys`.
    let mut open = [(false, 0); SCAN_DEPTH];
    let mut depth = 0;
    let mut expect_key = false;
    let mut i = 0;
    while let Some(&b) = json.get(i) {
        i += 1;
        match b {
            b'{' | b'[' => {
                if depth == max_depth {
                    return false;
                }
                open[depth] = (b == b'{', open_keys);
                depth += 1;
                expect_key = b == b'{';
            }
            b'}' | b']' => {
                depth -= 1;
                open_keys = open[depth].1;
                expect_key = false;
                if depth == 0 {
                    return json[i..].iter().all(u8::is_ascii_whitespace);
                }
            }
            b',' => expect_key = depth > 0 && open[depth - 1].0,
            b'"' => {
                let start = i;
                loop {
                    match json.get(i) {
                        Some(b'"') => break,
                        Some(b'\\') if expect_key || json.get(i + 1) == Some(&b'u') => return false,
                        Some(b'\\') => i += 2,
                        Some(_) => i += 1,
                        None => return false,
                    }
                }
                if expect_key {
                    total_keys += 1;
                    if total_keys > max_keys {
                        return false;
                    }
                    let key = &json[start..i];
                    let first = open[depth - 1].1;
                    if keys[first..open_keys].iter().any(|&(s, e)| &json[s..e] == key) {
                        return false;
                    }
                    keys[open_keys] = (start, i);
                    open_keys += 1;
                    expect_key = false;
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i - 1;
                while json.get(i).is_some_and(|b| matches!(b, b'0'..=b'9' | b'.' | b'-' | b'+' | b'e' | b'E')) {
                    i += 1;
                }
                let number = &json[start..i];
                if number.len() > 20 || number.iter().any(|b| matches!(b, b'e' | b'E')) {
                    return false;
                }
            }
            // whitespace, `:`, the letters of true, false and null
            _ => {}
        }
    }
    false
}

/// The context on one line, so that it can be logged as sent: borrowed unless it holds a line
/// break, which can only be whitespace between tokens (inside strings JSON requires `\n`).
/// Then every whitespace between tokens goes.
pub(super) fn compact(raw: &RawValue) -> Cow<'_, RawValue> {
    let json = raw.get().as_bytes();
    // Runs on every context: memchr searches a word at a time, not byte by byte.
    if memchr::memchr2(b'\n', b'\r', json).is_none() {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            (in_string, escaped) = (escaped || b != b'"', !escaped && b == b'\\');
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        } else {
            in_string = b == b'"';
        }
        out.push(b);
    }
    let out = String::from_utf8(out).expect("only ASCII whitespace was removed");
    Cow::Owned(RawValue::from_string(out).expect("removing whitespace keeps JSON valid"))
}

/// Walks a JSON value within the context limits without building it: the context is kept as the
/// validated text, so checking it allocates nothing but the keys that hold escapes.
#[derive(Clone, Copy)]
struct BoundedValue<'l, 'de> {
    depth: usize,
    keys: &'l Cell<usize>,
    /// The keys of the objects being walked, innermost last (duplicates are refused).
    seen: &'l RefCell<Vec<Cow<'de, str>>>,
    limits: &'l Limits,
}

impl<'de> BoundedValue<'_, 'de> {
    fn nested<E: de::Error>(self) -> Result<Self, E> {
        let depth = self.depth + 1;
        if depth > self.limits.max_context_depth {
            return Err(E::custom(format_args!("nested deeper than {} levels", self.limits.max_context_depth)));
        }
        Ok(Self { depth, ..self })
    }
}

impl<'de> DeserializeSeed<'de> for BoundedValue<'_, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BoundedValue<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        if v.is_finite() { Ok(()) } else { Err(E::custom("number out of range")) }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if v.contains('\0') {
            return Err(E::custom("contains a NUL character"));
        }
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        let first = self.seen.borrow().len();
        while let Some(key) = map.next_key_seed(ObjectKey)? {
            self.keys.set(self.keys.get() + 1);
            if self.keys.get() > self.limits.max_context_keys {
                return Err(de::Error::custom(format_args!("more than {} keys", self.limits.max_context_keys)));
            }
            if key.contains('\0') {
                return Err(de::Error::custom("a key contains a NUL character"));
            }
            {
                let mut seen = self.seen.borrow_mut();
                if seen[first..].contains(&key) {
                    return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
                }
                seen.push(key);
            }
            map.next_value_seed(inner)?;
        }
        self.seen.borrow_mut().truncate(first);
        Ok(())
    }
}

/// A JSON object key, borrowed from the text unless it holds escapes (serde's own `Cow<str>`
/// always copies). Also read by the OTLP encoder's walk of the context.
pub struct ObjectKey;

impl<'de> DeserializeSeed<'de> for ObjectKey {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for ObjectKey {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(depth: usize, keys: usize) -> Limits {
        Limits { max_context_depth: depth, max_context_keys: keys, ..Limits::default() }
    }

    /// xorshift64: the same cases on every run, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len())]
        }
    }

    /// Few distinct keys, so that duplicates are frequent; escaped spellings of the same key, NULs
    /// and lone surrogates among them.
    const KEYS: &[&str] =
        &[r#""a""#, r#""b""#, r#""\u0061""#, r#""a\u0000""#, r#""\n""#, r#""\ud800""#, r#""ab""#, r#""""#];
    const SCALARS: &[&str] = &[
        "0",
        "-1",
        "1.5",
        "-0.0",
        "18446744073709551616",
        "-9223372036854775809",
        "1e3",
        "1e400",
        "-1E400",
        "0e999",
        "123456789012345678901234567890",
        "true",
        "false",
        "null",
        r#""x""#,
        r#""""#,
        r#""a\"b""#,
        r#""\\u0000""#,
        r#""\u0000""#,
        r#""\ud800""#,
        r#""\ud83d\ude00""#,
        r#""\n\t\/""#,
        r#""é""#,
    ];

    fn value(rng: &mut Rng, depth: usize, out: &mut String) {
        let space = |rng: &mut Rng, out: &mut String| out.push_str(["", "", " ", "\n  "][rng.below(4)]);
        match if depth > 7 { 2 } else { rng.below(4) } {
            0 => {
                out.push('{');
                for i in 0..rng.below(5) {
                    if i > 0 {
                        out.push(',');
                    }
                    space(rng, out);
                    out.push_str(rng.pick(KEYS));
                    out.push(':');
                    space(rng, out);
                    value(rng, depth + 1, out);
                }
                out.push('}');
            }
            1 => {
                out.push('[');
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    value(rng, depth + 1, out);
                }
                out.push(']');
            }
            // an integer too large for a double, without an exponent
            _ if rng.below(50) == 0 => out.push_str(&"9".repeat(400)),
            _ => out.push_str(rng.pick(SCALARS)),
        }
    }

    /// Whatever the scan vouches for, the serde walk accepts: over generated objects with
    /// duplicates, escapes, NULs, overflowing numbers and deep nesting, under tight and loose bounds.
    #[test]
    fn the_scan_never_accepts_what_the_walk_refuses() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let bounds = [limits(5, 64), limits(2, 3), limits(1, 1), limits(200, 1000)];
        let (mut vouched, mut refused) = (0, 0);
        for _ in 0..200_000 {
            let mut json = String::from("{");
            json.push_str(rng.pick(KEYS));
            json.push(':');
            value(&mut rng, 1, &mut json);
            for _ in 0..rng.below(3) {
                json.push(',');
                json.push_str(rng.pick(KEYS));
                json.push(':');
                value(&mut rng, 1, &mut json);
            }
            json.push('}');
            let raw: &RawValue = serde_json::from_str(&json).expect("generated JSON is valid");
            for limits in &bounds {
                let walked = walk(raw.get(), limits);
                if plainly_within_bounds(raw.get().as_bytes(), limits) {
                    assert!(walked.is_ok(), "the scan accepted {json}, the walk refused: {walked:?}");
                    vouched += 1;
                }
                refused += usize::from(walked.is_err());
            }
        }
        assert!(vouched > 50_000 && refused > 50_000, "{vouched} vouched, {refused} refused: the cases miss");
    }

    #[test]
    fn what_browsers_send_is_vouched_for_by_the_scan() {
        let limits = Limits::default();
        for json in [
            "{}",
            r#"{"action":"button_click","component":"PayButton","cartItems":3,"total":59.9,"experiment":{"id":"checkout-v2","variant":"b"},"flags":["fast-pay","new-ui"]}"#,
            r#"{"a":{"a":{"a":{"a":{"a":1}}}},"b":[[[[]]]],"msg":"she said \"hi\"\n","n":-12.5,"ok":true,"x":null}"#,
            "{ \"a\" : 1 ,\n \"b\" : [ 1 , 2 ] }",
        ] {
            assert!(plainly_within_bounds(json.as_bytes(), &limits), "{json}");
            assert!(walk(json, &limits).is_ok(), "{json}");
        }
    }

    #[test]
    fn refusals_keep_the_walks_words() {
        let keys: Vec<String> = (0..65).map(|i| format!(r#""k{i}":{i}"#)).collect();
        let cases = [
            (r#"{"a":1,"b":{"c":2},"a":3}"#.to_string(), r#"duplicate key "a""#),
            (r#"{"a":1,"\u0061":2}"#.to_string(), r#"duplicate key "a""#),
            (r#"{"a":{"b":{"c":{"d":{"e":{}}}}}}"#.to_string(), "nested deeper than 5 levels"),
            (format!("{{{}}}", keys.join(",")), "more than 64 keys"),
            (r#"{"a\u0000":1}"#.to_string(), "a key contains a NUL character"),
            (r#"{"a":"x\u0000"}"#.to_string(), "contains a NUL character"),
            (r#"{"a":1e400}"#.to_string(), "number out of range"),
            (r#"{"a":"\ud800"}"#.to_string(), "hex escape"),
        ];
        for (json, needle) in cases {
            let raw: &RawValue = serde_json::from_str(&json).unwrap();
            let message = parse_context(raw, &Limits::default()).unwrap_err().message;
            assert!(message.starts_with("`context`: ") && message.contains(needle), "{json}: {message:?}");
        }
    }
}
