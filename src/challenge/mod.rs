//! An invisible proof-of-work challenge for suspected abuse (docs/security.md, "Challenge for
//! suspected abuse").
//!
//! An address refused by its limit `threshold` times within one rate-limit window is suspected: its
//! next refusals carry a signed challenge. A browser solves it off the main thread and presents the
//! solution with its next batch; a valid one earns a token bound to the address and the session,
//! which moves that session out of the address's exhausted quota into a quota of its own (the base
//! limit). Challenges and tokens are HMAC-signed with a shared secret, so every replica accepts them;
//! only the replay record of used challenges is per replica.
//!
//! Wire forms (all URL-safe, so they travel in a query string for `sendBeacon`):
//! - challenge `c1.<expires>.<difficulty>.<nonce>.<mac>`, the MAC also covering the address;
//! - solution `<challenge>.<counter>`, whose SHA-256 starts with `difficulty` zero bits;
//! - token `t1.<expires>.<mac>`, the MAC also covering the address and the session id.
//!
//! A request presents either in the `X-Challenge-Proof` header or the `proof` query parameter.

use std::{
    fmt::Write as _,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use moka::sync::Cache;
use prometheus::IntCounter;
use ring::{
    digest,
    hmac::{self, HMAC_SHA256},
    rand::{SecureRandom, SystemRandom},
};
use subtle::ConstantTimeEq;

use crate::{client_ip::IpBucket, observability::Metrics};

mod settings;

pub use settings::ChallengeConfig;

/// Response header of a challenged refusal: the challenge.
pub const CHALLENGE_HEADER: &str = "x-challenge";
/// Response header of every answer to a valid proof: the token to present next.
pub const TOKEN_HEADER: &str = "x-challenge-token";
/// Request header (or `proof` query parameter) presenting a solution or a token.
pub const PROOF_HEADER: &str = "x-challenge-proof";

/// How long a challenge may take to solve and present.
const CHALLENGE_TTL: Duration = Duration::from_secs(120);
/// Addresses whose refusals are counted at once, per replica.
const MAX_TRACKED_ADDRESSES: u64 = 100_000;
/// Used challenges remembered at once, per replica (each for at most `CHALLENGE_TTL`).
const MAX_USED_NONCES: u64 = 200_000;
const NONCE_BYTES: usize = 16;

/// The challenge's settings; `None` in `Settings` when it is off.
#[derive(Clone)]
pub struct ChallengeSettings {
    /// HMAC secrets: the first signs, any verifies (rotation without downtime).
    pub secrets: Vec<String>,
    /// Refusals of one address within a rate-limit window from which its refusals carry a challenge.
    pub threshold: u32,
    /// Leading zero bits the solution's SHA-256 must have (2^difficulty hashes on average).
    pub difficulty: u8,
    pub token_ttl: Duration,
    /// Tokens one address may earn per token lifetime, per replica.
    pub max_sessions_per_address: u32,
}

/// Without the secrets, so no debug print of the settings can show them.
impl std::fmt::Debug for ChallengeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChallengeSettings")
            .field("secrets", &format_args!("({} hidden)", self.secrets.len()))
            .field("threshold", &self.threshold)
            .field("difficulty", &self.difficulty)
            .field("token_ttl", &self.token_ttl)
            .field("max_sessions_per_address", &self.max_sessions_per_address)
            .finish()
    }
}

/// What became of a presented proof.
#[derive(Debug, PartialEq, Eq)]
pub enum Proof {
    /// Nothing was presented.
    None,
    /// A valid token (echoed back): the session has its own quota.
    Token(String),
    /// A valid solution: the session has its own quota from now on, with this new token.
    Solved(String),
    Refused(Refusal),
}

impl Proof {
    pub fn verified(&self) -> bool {
        matches!(self, Proof::Token(_) | Proof::Solved(_))
    }

    /// The token the answer carries: the one just earned, or the one presented.
    pub fn token(&self) -> Option<&str> {
        match self {
            Proof::Token(token) | Proof::Solved(token) => Some(token),
            _ => None,
        }
    }
}

/// Why a proof was refused: the request is then limited like any other of its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    /// Forged, signed with an unknown secret, or issued to another address (or session).
    Signature,
    Expired,
    /// The challenge was already used (on this replica).
    Replayed,
    /// The counter does not give the hash the required zero bits.
    Unsolved,
    /// A token is bound to a session: a solution needs one.
    NoSession,
    /// The address earned its maximum of tokens for now.
    TooManySessions,
}

impl Refusal {
    pub const ALL: [Refusal; 7] = [
        Refusal::Malformed,
        Refusal::Signature,
        Refusal::Expired,
        Refusal::Replayed,
        Refusal::Unsolved,
        Refusal::NoSession,
        Refusal::TooManySessions,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::Signature => "signature",
            Refusal::Expired => "expired",
            Refusal::Replayed => "replayed",
            Refusal::Unsolved => "unsolved",
            Refusal::NoSession => "no_session",
            Refusal::TooManySessions => "too_many_sessions",
        }
    }
}

pub struct Challenger {
    keys: Vec<hmac::Key>,
    difficulty: u8,
    threshold: u32,
    token_ttl: Duration,
    max_sessions: u32,
    random: SystemRandom,
    /// Refusals per address; an entry lives one rate-limit window from its first refusal.
    refusals: Cache<IpBucket, Arc<AtomicU32>>,
    /// Tokens earned per address; an entry lives one token lifetime from the first.
    sessions: Cache<IpBucket, Arc<AtomicU32>>,
    used_nonces: Cache<[u8; 2 * NONCE_BYTES], ()>,
    issued: IntCounter,
    /// By `Proof`: token, solved, then each `Refusal` in `Refusal::ALL` order.
    proofs: Vec<IntCounter>,
}

impl Challenger {
    pub fn new(settings: &ChallengeSettings, rate_limit_window: Duration, metrics: &Metrics) -> Self {
        let proofs = metrics.counter_vec(
            "client_telemetry_challenge_proofs_total",
            "Challenge solutions and tokens presented, by result (token, solved, or why refused).",
            &["result"],
        );
        let results = ["token", "solved"].into_iter().chain(Refusal::ALL.map(Refusal::as_str));
        Self {
            keys: settings.secrets.iter().map(|s| hmac::Key::new(HMAC_SHA256, s.as_bytes())).collect(),
            difficulty: settings.difficulty,
            threshold: settings.threshold,
            token_ttl: settings.token_ttl,
            max_sessions: settings.max_sessions_per_address,
            random: SystemRandom::new(),
            refusals: Cache::builder().max_capacity(MAX_TRACKED_ADDRESSES).time_to_live(rate_limit_window).build(),
            sessions: Cache::builder().max_capacity(MAX_TRACKED_ADDRESSES).time_to_live(settings.token_ttl).build(),
            used_nonces: Cache::builder().max_capacity(MAX_USED_NONCES).time_to_live(CHALLENGE_TTL).build(),
            issued: metrics.counter(
                "client_telemetry_challenges_issued_total",
                "Refusals that carried a proof-of-work challenge (the address was suspected).",
            ),
            proofs: results.map(|r| proofs.with_label_values(&[r])).collect(),
        }
    }

    /// Checks what a request presented, a solution or a token, at `now` (Unix seconds).
    pub fn check(&self, presented: Option<&str>, address: IpBucket, session: Option<&str>, now: u64) -> Proof {
        let proof = match presented {
            None => return Proof::None,
            Some(solution) if solution.starts_with("c1.") => self.check_solution(solution, address, session, now),
            Some(token) => match self.check_token(token, address, session, now) {
                Ok(()) => Proof::Token(token.to_owned()),
                Err(refusal) => Proof::Refused(refusal),
            },
        };
        let index = match &proof {
            Proof::Token(_) => 0,
            Proof::Solved(_) => 1,
            Proof::Refused(r) => 2 + Refusal::ALL.iter().position(|x| x == r).unwrap_or(0),
            Proof::None => unreachable!("returned above"),
        };
        self.proofs[index].inc();
        proof
    }

    /// Counts a refusal of an address by its limit; once it is suspected, returns a challenge for
    /// the refusal to carry.
    pub fn refused(&self, address: IpBucket, now: u64) -> Option<String> {
        let count = self.refusals.get_with(address, Default::default);
        let refusals = count.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if refusals < self.threshold {
            return None;
        }
        self.issued.inc();
        Some(self.challenge(address, now))
    }

    pub fn difficulty(&self) -> u8 {
        self.difficulty
    }

    /// A fresh signed challenge for this address.
    pub fn challenge(&self, address: IpBucket, now: u64) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        self.random.fill(&mut nonce).expect("the system's random source works");
        let body = format!("c1.{}.{}.{}", now + CHALLENGE_TTL.as_secs(), self.difficulty, hex(&nonce));
        let mac = self.sign(&format!("{body}|{address}"));
        format!("{body}.{mac}")
    }

    /// A token for this session of this address.
    pub fn token(&self, address: IpBucket, session: &str, now: u64) -> String {
        let body = format!("t1.{}", now + self.token_ttl.as_secs());
        let mac = self.sign(&format!("{body}|{address}|{session}"));
        format!("{body}.{mac}")
    }

    fn check_solution(&self, solution: &str, address: IpBucket, session: Option<&str>, now: u64) -> Proof {
        let Some(session) = session else { return Proof::Refused(Refusal::NoSession) };
        let parts: Vec<&str> = solution.split('.').collect();
        let [version, expires, difficulty, nonce, mac, counter] = parts[..] else {
            return Proof::Refused(Refusal::Malformed);
        };
        let (Ok(expires), Ok(difficulty), Ok(nonce), true) = (
            expires.parse::<u64>(),
            difficulty.parse::<u8>(),
            <[u8; 2 * NONCE_BYTES]>::try_from(nonce.as_bytes()),
            version == "c1"
                && !counter.is_empty()
                && counter.len() <= 20
                && counter.bytes().all(|b| b.is_ascii_digit()),
        ) else {
            return Proof::Refused(Refusal::Malformed);
        };
        let body_len = solution.len() - counter.len() - mac.len() - 2;
        if !self.verify(&format!("{}|{address}", &solution[..body_len]), mac) {
            return Proof::Refused(Refusal::Signature);
        }
        if now > expires {
            return Proof::Refused(Refusal::Expired);
        }
        if leading_zero_bits(digest::digest(&digest::SHA256, solution.as_bytes()).as_ref()) < u32::from(difficulty) {
            return Proof::Refused(Refusal::Unsolved);
        }
        // Last: a solution refused for another reason does not use up its challenge.
        if !self.used_nonces.entry(nonce).or_insert(()).is_fresh() {
            return Proof::Refused(Refusal::Replayed);
        }
        let earned = self.sessions.get_with(address, Default::default).fetch_add(1, Ordering::Relaxed);
        if earned >= self.max_sessions {
            return Proof::Refused(Refusal::TooManySessions);
        }
        Proof::Solved(self.token(address, session, now))
    }

    fn check_token(&self, token: &str, address: IpBucket, session: Option<&str>, now: u64) -> Result<(), Refusal> {
        let session = session.ok_or(Refusal::NoSession)?;
        let (body, mac) = token.rsplit_once('.').ok_or(Refusal::Malformed)?;
        let expires = body.strip_prefix("t1.").and_then(|e| e.parse::<u64>().ok()).ok_or(Refusal::Malformed)?;
        if !self.verify(&format!("{body}|{address}|{session}"), mac) {
            return Err(Refusal::Signature);
        }
        if now > expires {
            return Err(Refusal::Expired);
        }
        Ok(())
    }

    fn sign(&self, message: &str) -> String {
        hex(hmac::sign(&self.keys[0], message.as_bytes()).as_ref())
    }

    /// True when any of the secrets signed `message` with `mac` (compared in constant time).
    fn verify(&self, message: &str, mac: &str) -> bool {
        self.keys.iter().fold(false, |valid, key| {
            let expected = hex(hmac::sign(key, message.as_bytes()).as_ref());
            valid | bool::from(expected.as_bytes().ct_eq(mac.as_bytes()))
        })
    }
}

/// Now, in Unix seconds (challenges and tokens carry their expiry in these: replicas share a clock).
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn leading_zero_bits(hash: &[u8]) -> u32 {
    let mut bits = 0;
    for byte in hash {
        bits += byte.leading_zeros();
        if *byte != 0 {
            break;
        }
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDRESS: IpBucket = IpBucket::V4([198, 51, 100, 7]);

    fn challenger(secrets: &[&str]) -> Challenger {
        let settings = ChallengeSettings {
            secrets: secrets.iter().map(|s| s.to_string()).collect(),
            threshold: 3,
            difficulty: 8,
            token_ttl: Duration::from_secs(600),
            max_sessions_per_address: 2,
        };
        Challenger::new(&settings, Duration::from_secs(60), &Metrics::new())
    }

    fn solve(challenge: &str) -> String {
        (0u64..)
            .map(|n| format!("{challenge}.{n}"))
            .find(|s| leading_zero_bits(digest::digest(&digest::SHA256, s.as_bytes()).as_ref()) >= 8)
            .unwrap()
    }

    fn solution(s: String) -> Option<&'static str> {
        Some(Box::leak(s.into_boxed_str()))
    }

    fn token(t: &str) -> Option<&str> {
        Some(t)
    }

    #[test]
    fn an_address_is_challenged_from_its_threshold_of_refusals_on() {
        let c = challenger(&["k"]);
        assert_eq!(c.refused(ADDRESS, 1000), None);
        assert_eq!(c.refused(ADDRESS, 1000), None);
        let challenge = c.refused(ADDRESS, 1000).expect("third refusal");
        assert!(challenge.starts_with("c1.1120.8."), "{challenge}");
        assert_eq!(c.refused(IpBucket::V4([203, 0, 113, 1]), 1000), None, "another address is not suspected");
    }

    #[test]
    fn a_solution_earns_a_token_once_for_its_address_and_session() {
        let c = challenger(&["k"]);
        let solved = solve(&c.challenge(ADDRESS, 1000));
        let Proof::Solved(t) = c.check(solution(solved.clone()), ADDRESS, Some("s1"), 1001) else { panic!() };
        assert_eq!(c.check(token(&t), ADDRESS, Some("s1"), 1002), Proof::Token(t.clone()));
        assert_eq!(c.check(token(&t), ADDRESS, Some("s2"), 1002), Proof::Refused(Refusal::Signature));
        let elsewhere = IpBucket::V4([203, 0, 113, 1]);
        assert_eq!(c.check(token(&t), elsewhere, Some("s1"), 1002), Proof::Refused(Refusal::Signature));
        assert_eq!(c.check(token(&t), ADDRESS, Some("s1"), 1000 + 601 + 1), Proof::Refused(Refusal::Expired));
        assert_eq!(c.check(solution(solved), ADDRESS, Some("s3"), 1001), Proof::Refused(Refusal::Replayed));
    }

    #[test]
    fn solutions_are_refused_when_unsolved_late_forged_elsewhere_or_sessionless() {
        let c = challenger(&["k"]);
        let challenge = c.challenge(ADDRESS, 1000);
        let solved = solve(&challenge);
        let unsolved = (0u64..)
            .map(|n| format!("{challenge}.{n}"))
            .find(|s| leading_zero_bits(digest::digest(&digest::SHA256, s.as_bytes()).as_ref()) < 8)
            .unwrap();
        assert_eq!(c.check(solution(unsolved), ADDRESS, Some("s"), 1001), Proof::Refused(Refusal::Unsolved));
        assert_eq!(c.check(solution(solved.clone()), ADDRESS, Some("s"), 1121), Proof::Refused(Refusal::Expired));
        let other = IpBucket::V4([203, 0, 113, 1]);
        assert_eq!(c.check(solution(solved.clone()), other, Some("s"), 1001), Proof::Refused(Refusal::Signature));
        // an easier difficulty written into a signed challenge breaks its signature
        let easier = solve(&challenge.replacen(".8.", ".1.", 1));
        assert_eq!(c.check(solution(easier), ADDRESS, Some("s"), 1001), Proof::Refused(Refusal::Signature));
        assert_eq!(c.check(solution(solved.clone()), ADDRESS, None, 1001), Proof::Refused(Refusal::NoSession));
        for bad in ["c1.", "c1.x.8.n.m.1", &format!("{solved}x")] {
            assert_eq!(c.check(solution(bad.into()), ADDRESS, Some("s"), 1001), Proof::Refused(Refusal::Malformed));
        }
        // none of these used the challenge up
        assert!(matches!(c.check(solution(solved), ADDRESS, Some("s"), 1001), Proof::Solved(_)));
    }

    #[test]
    fn an_address_earns_at_most_its_maximum_of_tokens() {
        let c = challenger(&["k"]);
        for session in ["a", "b"] {
            let solved = solve(&c.challenge(ADDRESS, 1000));
            assert!(matches!(c.check(solution(solved), ADDRESS, Some(session), 1000), Proof::Solved(_)));
        }
        let third = solve(&c.challenge(ADDRESS, 1000));
        assert_eq!(c.check(solution(third), ADDRESS, Some("c"), 1000), Proof::Refused(Refusal::TooManySessions));
    }

    #[test]
    fn rotation_signs_with_the_first_secret_and_accepts_any() {
        let old = challenger(&["old"]);
        let rotating = challenger(&["new", "old"]);
        let new_only = challenger(&["new"]);
        let issued_before = old.token(ADDRESS, "s", 1000);
        assert!(rotating.check(token(&issued_before), ADDRESS, Some("s"), 1001).verified());
        let issued_during = rotating.token(ADDRESS, "s", 1000);
        assert!(new_only.check(token(&issued_during), ADDRESS, Some("s"), 1001).verified());
        let refused = new_only.check(token(&issued_before), ADDRESS, Some("s"), 1001);
        assert_eq!(refused, Proof::Refused(Refusal::Signature));
        for bad in ["", "t1", "t1.x.m", "x"] {
            assert_eq!(new_only.check(token(bad), ADDRESS, Some("s"), 1001), Proof::Refused(Refusal::Malformed));
        }
    }

    #[test]
    fn zero_bits_are_counted_across_bytes() {
        assert_eq!(leading_zero_bits(&[0, 0x1f, 0xff]), 11);
        assert_eq!(leading_zero_bits(&[0x80]), 0);
        assert_eq!(leading_zero_bits(&[0, 0]), 16);
    }
}
