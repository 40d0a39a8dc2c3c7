use crate::setting::{self, at_least};

setting::component! {
    /// Bounds on the events of one request.
    pub struct LimitsConfig {
        /// events per batch
        max_events_per_request: usize = 500,
        /// size of `message`
        max_message_bytes: usize = 8192,
        /// size of `scope`
        max_scope_bytes: usize = 128,
        /// size of `sessionId`, `requestId`, and of the session and batch ids
        max_id_bytes: usize = 128,
        /// size of `context` as JSON text (at least 2)
        max_context_bytes: usize = 16_384,
        /// keys in one context, nested objects included
        max_context_keys: usize = 64,
        /// nesting levels in one context
        max_context_depth: usize = 5,
    }
}

impl LimitsConfig {
    pub fn resolve(&self) -> Result<Limits, setting::Error> {
        Ok(Limits {
            max_events_per_request: at_least("max_events_per_request", self.max_events_per_request, 1)?,
            max_message_bytes: at_least("max_message_bytes", self.max_message_bytes, 1)?,
            max_scope_bytes: at_least("max_scope_bytes", self.max_scope_bytes, 1)?,
            max_id_bytes: at_least("max_id_bytes", self.max_id_bytes, 1)?,
            max_context_bytes: at_least("max_context_bytes", self.max_context_bytes, 2)?,
            max_context_keys: at_least("max_context_keys", self.max_context_keys, 1)?,
            max_context_depth: at_least("max_context_depth", self.max_context_depth, 1)?,
            origin: OriginLimits::default(),
        })
    }
}

impl Default for Limits {
    fn default() -> Self {
        LimitsConfig::default().resolve().expect("the defaults are valid")
    }
}

/// Bounds on the events of one request.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_events_per_request: usize,
    pub max_message_bytes: usize,
    pub max_scope_bytes: usize,
    /// For `sessionId` and `requestId`.
    pub max_id_bytes: usize,
    pub max_context_bytes: usize,
    /// Keys counted over every nested object of one event's context.
    pub max_context_keys: usize,
    pub max_context_depth: usize,
    /// The batch's `app`, `page`, `browser` and `sdk`, and each event's `exception`.
    pub origin: OriginLimits,
}

/// Bounds on the context the browser sends once per batch, and on exceptions. Fixed defaults: they
/// are sized from what the client sends (it cuts a message at 2,000 and a stack at 8,000
/// characters, up to 3 bytes each in UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginLimits {
    /// `app.*`, `sdk.*`, `browser.language`, `browser.platform`, each brand and its version.
    pub max_name_bytes: usize,
    pub max_url_bytes: usize,
    pub max_brands: usize,
    /// The `User-Agent` header is cut (at a character boundary) beyond this, not refused.
    pub max_user_agent_bytes: usize,
    pub max_exception_type_bytes: usize,
    pub max_exception_message_bytes: usize,
    pub max_stacktrace_bytes: usize,
}

impl Default for OriginLimits {
    fn default() -> Self {
        Self {
            max_name_bytes: 128,
            max_url_bytes: 2048,
            max_brands: 10,
            max_user_agent_bytes: 512,
            max_exception_type_bytes: 256,
            max_exception_message_bytes: 8192,
            max_stacktrace_bytes: 32768,
        }
    }
}
