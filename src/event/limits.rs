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
