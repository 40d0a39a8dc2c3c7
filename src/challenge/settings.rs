//! The challenge's settings.

use std::time::Duration;

use super::ChallengeSettings;
use crate::setting::{self, at_least};

setting::component! {
    /// The proof-of-work challenge for suspected abuse (docs/security.md).
    pub struct ChallengeConfig {
        /// answer a suspected address's refusals with a proof-of-work challenge; a solving session earns its own quota
        challenge_enabled: bool = false,
        /// HMAC secrets, comma-separated, each 32+ characters: the first signs, any verifies (rotation without downtime); the same on every replica; never shown
        #[serde(deserialize_with = "setting::comma_list", serialize_with = "setting::redact_list")]
        challenge_secrets: Vec<String> = Vec::new(),
        /// refusals of one address within a rate-limit window from which its refusals carry a challenge
        challenge_threshold: u32 = 10,
        /// leading zero bits of the solution's SHA-256 (2^difficulty hashes on average; 1 to 32)
        challenge_difficulty: u8 = 12,
        /// how long an earned token lifts its session out of the suspected state
        challenge_token_ttl_ms: u64 = 3_600_000,
        /// tokens one address may earn per token lifetime, per replica
        challenge_max_sessions_per_address: u32 = 10,
    }
}

impl ChallengeConfig {
    /// `None` when the challenge is off.
    pub fn resolve(&self) -> Result<Option<ChallengeSettings>, setting::Error> {
        if !self.challenge_enabled {
            return Ok(None);
        }
        if self.challenge_secrets.is_empty() {
            let reason = "the challenge needs at least one secret (32+ characters)";
            return Err(setting::invalid_key("challenge_secrets", "", reason));
        }
        if self.challenge_secrets.iter().any(|s| s.len() < 32) {
            let reason = "each secret must be at least 32 characters";
            return Err(setting::invalid_key("challenge_secrets", "(hidden)", reason));
        }
        if !(1..=32).contains(&self.challenge_difficulty) {
            let value = self.challenge_difficulty.to_string();
            return Err(setting::invalid_key("challenge_difficulty", &value, "expected 1 to 32 (leading zero bits)"));
        }
        Ok(Some(ChallengeSettings {
            secrets: self.challenge_secrets.clone(),
            threshold: at_least("challenge_threshold", self.challenge_threshold, 1)?,
            difficulty: self.challenge_difficulty,
            token_ttl: Duration::from_millis(at_least("challenge_token_ttl_ms", self.challenge_token_ttl_ms, 1000)?),
            max_sessions_per_address: at_least(
                "challenge_max_sessions_per_address",
                self.challenge_max_sessions_per_address,
                1,
            )?,
        }))
    }
}
