//! The proof-of-work challenge for suspected abuse, as clients see it over HTTP: a flooded address's
//! refusals carry a challenge; a solution earns a token for one session of one address, with a quota
//! of its own; replays, reused challenges, forgeries and expired tokens are refused; and every
//! replica sharing the secret accepts another's tokens.
mod support;

use std::time::Duration;

use ring::digest;
use support::{Gateway, INGEST, RedisServer, Reply, batch};

const SECRET: &str = "challenge-secret-0123456789-abcdef";
const FLOODER: &str = "198.51.100.7";
const DIFFICULTY: u32 = 8;

/// 2 requests per address per minute; from the 3rd refusal of an address on, its refusals carry a
/// challenge of 8 zero bits.
fn gateway(extra: &[(&str, &str)]) -> Gateway {
    let mut env = vec![
        ("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", "2"),
        ("CLIENT_TELEMETRY_TRUSTED_PROXIES", "127.0.0.1/32"),
        ("CLIENT_TELEMETRY_CHALLENGE_ENABLED", "true"),
        ("CLIENT_TELEMETRY_CHALLENGE_SECRETS", SECRET),
        ("CLIENT_TELEMETRY_CHALLENGE_THRESHOLD", "3"),
        ("CLIENT_TELEMETRY_CHALLENGE_DIFFICULTY", "8"),
    ];
    env.extend_from_slice(extra);
    Gateway::start(&env)
}

/// POSTs one event as `ip` (through the trusted proxy), in session `session`, with an optional
/// proof, all in the query string as the browser client sends them.
fn send(gateway: &Gateway, ip: &str, session: &str, proof: Option<&str>) -> Reply {
    let proof = proof.map(|p| format!("&proof={p}")).unwrap_or_default();
    let url = gateway.url(&format!("{INGEST}?session={session}{proof}"));
    let request = ureq::post(&url).set("content-type", "application/json").set("x-forwarded-for", ip);
    support::reply(request.send_string(&batch(1)))
}

/// Floods from `ip` until a refusal carries a challenge; returns it.
fn challenged(gateway: &Gateway, ip: &str) -> String {
    for _ in 0..10 {
        let reply = send(gateway, ip, "flood", None);
        if let Some(challenge) = reply.header("x-challenge") {
            assert_eq!(reply.status, 429);
            let body = reply.json();
            assert_eq!(body["challenge"]["value"], challenge);
            assert_eq!(body["challenge"]["difficulty"], DIFFICULTY);
            assert_eq!(body["challenge"]["algorithm"], "SHA-256");
            return challenge.to_string();
        }
    }
    panic!("no challenge after 10 requests");
}

/// What the browser's solver does: the first counter whose SHA-256 has the leading zero bits.
fn solve(challenge: &str) -> String {
    let zero_bits = |hash: &[u8]| {
        let first = hash.iter().position(|b| *b != 0).unwrap_or(hash.len());
        first as u32 * 8 + hash.get(first).map_or(0, |b| b.leading_zeros())
    };
    (0u64..)
        .map(|n| format!("{challenge}.{n}"))
        .find(|s| zero_bits(digest::digest(&digest::SHA256, s.as_bytes()).as_ref()) >= DIFFICULTY)
        .unwrap()
}

/// Floods, solves, presents the solution in `session`: returns the token it earned.
fn token(gateway: &Gateway, ip: &str, session: &str) -> String {
    let solution = solve(&challenged(gateway, ip));
    let reply = send(gateway, ip, session, Some(&solution));
    assert_eq!(reply.status, 204, "{}", reply.body);
    reply.header("x-challenge-token").expect("a token for the solution").to_string()
}

#[test]
fn a_flooded_address_is_challenged_and_a_solving_session_gets_a_quota_of_its_own() {
    let gateway = gateway(&[]);
    for expected in [204, 204, 429, 429] {
        let reply = send(&gateway, FLOODER, "flood", None);
        assert_eq!(reply.status, expected);
        assert_eq!(reply.header("x-challenge"), None, "below the threshold: a plain refusal");
    }
    let challenge = challenged(&gateway, FLOODER);
    assert!(challenge.starts_with("c1."), "{challenge}");
    // The solution is admitted although the address is spent, and earns a token.
    let reply = send(&gateway, FLOODER, "solver", Some(&solve(&challenge)));
    assert_eq!(reply.status, 204, "{}", reply.body);
    let token = reply.header("x-challenge-token").unwrap().to_string();
    assert!(token.starts_with("t1."), "{token}");
    assert!(reply.header("ratelimit").unwrap().starts_with(r#""ip";r=1;"#), "the session's own window: 1 left");
    // The token holder has the base limit for itself (the solution spent 1 of 2); each answer
    // gives the token back.
    let reply = send(&gateway, FLOODER, "solver", Some(&token));
    assert_eq!((reply.status, reply.header("x-challenge-token")), (204, Some(token.as_str())));
    let spent = send(&gateway, FLOODER, "solver", Some(&token));
    assert_eq!(spent.status, 429);
    assert_eq!(spent.header("x-challenge"), None, "a verified session is not challenged again");
    // The flooder without a token stays refused.
    assert_eq!(send(&gateway, FLOODER, "flood", None).status, 429);
    assert_eq!(gateway.metric(r#"client_telemetry_challenge_proofs_total{result="solved"}"#), 1.0);
    assert_eq!(gateway.metric(r#"client_telemetry_challenge_proofs_total{result="token"}"#), 2.0);
    assert!(gateway.metric("client_telemetry_challenges_issued_total") >= 1.0);
    // The solver script is served at GET of the ingest route.
    let solver = gateway.get(&gateway.url(INGEST));
    assert_eq!(solver.status, 200);
    assert!(solver.body.contains("SHA-256"), "{}", solver.body);
}

#[test]
fn a_token_replayed_from_another_address_is_refused() {
    let gateway = gateway(&[]);
    let token = token(&gateway, FLOODER, "s1");
    let other = "203.0.113.9";
    challenged(&gateway, other);
    let replayed = send(&gateway, other, "s1", Some(&token));
    assert_eq!(replayed.status, 429);
    assert_eq!(replayed.json()["challengeRefused"], "signature");
    assert_eq!(replayed.header("x-challenge-token"), None);
    // and from the same address by another session
    let other_session = send(&gateway, FLOODER, "s2", Some(&token));
    assert_eq!((other_session.status, &other_session.json()["challengeRefused"]), (429, &"signature".into()));
}

#[test]
fn a_reused_challenge_is_refused() {
    let gateway = gateway(&[]);
    let solution = solve(&challenged(&gateway, FLOODER));
    assert_eq!(send(&gateway, FLOODER, "s1", Some(&solution)).status, 204);
    let reused = send(&gateway, FLOODER, "s2", Some(&solution));
    assert_eq!(reused.status, 429);
    assert_eq!(reused.json()["challengeRefused"], "replayed");
    assert!(reused.header("x-challenge").is_some(), "a fresh challenge instead");
    assert_eq!(gateway.metric(r#"client_telemetry_challenge_proofs_total{result="replayed"}"#), 1.0);
}

#[test]
fn forged_signatures_are_refused() {
    let gateway = gateway(&[]);
    let token = token(&gateway, FLOODER, "s1");
    let (body, mac) = token.rsplit_once('.').unwrap();
    let flipped = format!("{body}.{}{}", if mac.starts_with('0') { '1' } else { '0' }, &mac[1..]);
    // a later expiry under the original signature
    let (_, expires) = body.split_once('.').unwrap();
    let extended = format!("t1.{}.{mac}", expires.parse::<u64>().unwrap() + 86_400);
    // a token signed with another secret
    let stranger = gateway_token_with_secret("another-secret-0123456789-abcdefgh", "s1");
    // an unsolved challenge made to look easier
    let challenge = challenged(&gateway, FLOODER);
    let easier = solve(&challenge.replacen(".8.", ".1.", 1));
    for forged in [flipped, extended, stranger, easier] {
        let reply = send(&gateway, FLOODER, "s1", Some(&forged));
        assert_eq!(reply.status, 429, "{forged}");
        assert_eq!(reply.json()["challengeRefused"], "signature", "{forged}");
    }
}

/// A token for FLOODER's session from a gateway with another secret.
fn gateway_token_with_secret(secret: &str, session: &str) -> String {
    let stranger = gateway(&[("CLIENT_TELEMETRY_CHALLENGE_SECRETS", secret)]);
    token(&stranger, FLOODER, session)
}

#[test]
fn an_expired_token_is_refused() {
    let gateway = gateway(&[("CLIENT_TELEMETRY_CHALLENGE_TOKEN_TTL_MS", "1000")]);
    let token = token(&gateway, FLOODER, "s1");
    assert_eq!(send(&gateway, FLOODER, "s1", Some(&token)).status, 204, "still valid");
    // Expiry is in whole seconds: past it for sure after two.
    std::thread::sleep(Duration::from_millis(2100));
    let expired = send(&gateway, FLOODER, "s1", Some(&token));
    assert_eq!(expired.status, 429);
    assert_eq!(expired.json()["challengeRefused"], "expired");
}

#[test]
fn replicas_sharing_the_secret_accept_each_others_challenges_and_tokens() {
    // The second replica is at the first step of a rotation: it accepts a new secret, still signing
    // with the current one (docs/security.md).
    let a = gateway(&[]);
    let rotating = format!("{SECRET},new-secret-0123456789-abcdefghijkl");
    let b = gateway(&[("CLIENT_TELEMETRY_CHALLENGE_SECRETS", &rotating)]);
    let token_from_a = token(&a, FLOODER, "s1");
    challenged(&b, FLOODER);
    let reply = send(&b, FLOODER, "s1", Some(&token_from_a));
    assert_eq!(reply.status, 204, "{}", reply.body);
    // A challenge issued by A, solved and presented at B, earns a token there that A accepts too.
    challenged(&a, "203.0.113.9");
    let solution = solve(&challenged(&a, "203.0.113.9"));
    let reply = send(&b, "203.0.113.9", "s2", Some(&solution));
    assert_eq!(reply.status, 204, "{}", reply.body);
    let token_from_b = reply.header("x-challenge-token").unwrap().to_string();
    assert_eq!(send(&a, "203.0.113.9", "s2", Some(&token_from_b)).status, 204);
}

#[test]
fn off_by_default_a_proof_changes_nothing_and_refusals_carry_no_challenge() {
    let gateway = Gateway::start(&[
        ("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", "1"),
        ("CLIENT_TELEMETRY_TRUSTED_PROXIES", "127.0.0.1/32"),
    ]);
    assert_eq!(send(&gateway, FLOODER, "s", None).status, 204);
    for _ in 0..5 {
        let reply = send(&gateway, FLOODER, "s", Some("t1.99999999999.00"));
        assert_eq!(reply.status, 429);
        assert_eq!((reply.header("x-challenge"), reply.header("x-challenge-token")), (None, None));
        assert_eq!(reply.json().get("challenge"), None);
    }
}

#[test]
fn on_the_redis_backend_a_verified_session_has_one_quota_for_the_whole_fleet() {
    let redis = RedisServer::start();
    let url = redis.url();
    let shared = [
        ("CLIENT_TELEMETRY_RATE_LIMIT_BACKEND", "redis"),
        ("CLIENT_TELEMETRY_REDIS_URL", url.as_str()),
        ("CLIENT_TELEMETRY_REDIS_TIMEOUT_MS", "2000"),
    ];
    let (a, b) = (gateway(&shared), gateway(&shared));
    let earned = token(&a, FLOODER, "s1"); // the solution spent 1 of the session's 2
    assert_eq!(send(&b, FLOODER, "s1", Some(&earned)).status, 204);
    let spent = send(&a, FLOODER, "s1", Some(&earned));
    assert_eq!(spent.status, 429, "the session's quota is shared by both replicas");
    assert_eq!(spent.header("x-challenge-token"), Some(earned.as_str()));
    // another session of the same address, with its own token, has its own quota
    let other = token(&b, FLOODER, "s2");
    assert_eq!(send(&a, FLOODER, "s2", Some(&other)).status, 204);
}
